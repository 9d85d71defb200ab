"""Secret references: settings name where a secret lives, never the secret itself.

::

    env:NAME              a variable of this process
    file:PATH             a file (a mounted secret), without surrounding whitespace
    secretsmanager:ID     an AWS Secrets Manager secret, by ARN or name: its current value,
                          read once when the process starts, with the substrate's client

Anything else is refused, so a secret cannot sit in configuration by mistake. A reference that
cannot be read stops the process at start (fail closed) with one line naming the reference,
never a value: a role that ran without its key would refuse every message it receives.
"""

from __future__ import annotations

import os
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import SecretStr

from tpf.errors import ConfigurationError
from tpf.settings import Settings
from tpf.substrate import sync_client

SECRETS_MANAGER = "secretsmanager"
SCHEMES = ("env", "file", SECRETS_MANAGER)


def resolve_secret(reference: str, settings: Settings | None = None) -> bytes:
    """The secret ``reference`` names; ``settings`` say where Secrets Manager is."""
    scheme, _, target = reference.partition(":")
    if scheme == "env":
        value = os.environ.get(target)
        if not value:
            raise ConfigurationError(f"secret reference {reference!r}: variable {target} is unset")
        return value.encode()
    if scheme == "file":
        try:
            secret = Path(target).read_bytes().strip()
        except OSError as exc:
            raise ConfigurationError(f"secret reference {reference!r}: {exc.strerror}") from exc
        if not secret:
            raise ConfigurationError(f"secret reference {reference!r}: the file is empty")
        return secret
    if scheme == SECRETS_MANAGER and target:
        if settings is None:
            raise ConfigurationError(
                f"secret reference {reference!r}: Secrets Manager needs the process's settings"
            )
        return _read_secrets_manager(reference, target, settings)
    raise ConfigurationError(
        f"secret reference {reference!r} must start with "
        + ", ".join(f"{s}:" for s in SCHEMES[:-1])
        + f" or {SCHEMES[-1]}:"
    )


def resolve_token(token: SecretStr | None, settings: Settings) -> str | None:
    """A bearer token setting: the token itself, or a ``secretsmanager:`` reference to it.

    Only that scheme is read as a reference: tokens are values today, and one that happens to
    begin ``env:`` or ``file:`` must keep working as the token it is.
    """
    if token is None:
        return None
    value = token.get_secret_value()
    if not value.startswith(f"{SECRETS_MANAGER}:"):
        return value
    return resolve_secret(value, settings).decode()


def _read_secrets_manager(reference: str, secret_id: str, settings: Settings) -> bytes:
    client = sync_client(settings, SECRETS_MANAGER)
    try:
        answer = client.get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ConfigurationError(
            f"secret reference {reference!r}: Secrets Manager refused to read it ({code}); "
            "check the ARN or name and that this role may secretsmanager:GetSecretValue it"
        ) from exc
    except BotoCoreError as exc:
        raise ConfigurationError(
            f"secret reference {reference!r}: Secrets Manager could not be reached ({exc})"
        ) from exc
    secret: bytes = (answer.get("SecretString") or "").strip().encode() or answer.get(
        "SecretBinary", b""
    )
    if not secret:
        raise ConfigurationError(f"secret reference {reference!r}: the secret is empty")
    return secret
