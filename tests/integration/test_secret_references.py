"""Secrets kept in Secrets Manager, read by reference on moto's server: the signing key and the
API tokens as a deployed stack configures them (``secretsmanager:<arn>``), and every way such a
reference can fail to be read stopping the process with one line."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from coordinator.role import tokens
from tests.substrates import settings_for
from tpf.errors import ConfigurationError
from tpf.secret_references import resolve_secret, resolve_token
from tpf.settings import Settings
from tpf.signing import signer_for
from tpf.substrate import Endpoints, sync_client
from tpfctl.embedded import EmbeddedSubstrate

pytestmark = [pytest.mark.substrate, pytest.mark.timeout(60)]

KEY = "k" * 64
CONTROL, ADMIN = "c" * 32, "a" * 32


@pytest.fixture(scope="module")
def settings(moto_server: EmbeddedSubstrate) -> Settings:
    url = moto_server.endpoint_url
    return settings_for("embedded", Endpoints(dynamodb=url, sqs=url, s3=url))


@pytest.fixture(scope="module")
def secrets_manager(settings: Settings) -> Any:
    return sync_client(settings, "secretsmanager")


def _secret(secrets_manager: Any, value: str) -> tuple[str, str]:
    """A new secret holding ``value``: (ARN, name)."""
    name = f"tpf-test/{uuid.uuid4().hex}"
    made = secrets_manager.create_secret(Name=name, SecretString=value)
    return made["ARN"], name


def test_a_secret_is_read_by_arn_or_by_name(settings: Settings, secrets_manager: Any) -> None:
    arn, name = _secret(secrets_manager, KEY)
    assert resolve_secret(f"secretsmanager:{arn}", settings) == KEY.encode()
    assert resolve_secret(f"secretsmanager:{name}", settings) == KEY.encode()


def test_the_signing_key_and_its_predecessor_come_from_secrets_manager(
    settings: Settings, secrets_manager: Any
) -> None:
    current, _ = _secret(secrets_manager, KEY)
    previous, _ = _secret(secrets_manager, "p" * 64)
    configured = settings.model_copy(
        update={
            "signing_key": f"secretsmanager:{current}",
            "signing_key_previous": f"secretsmanager:{previous}",
        }
    )
    signer = signer_for(configured)
    assert signer.current.secret == KEY.encode()
    assert signer.read_token(signer.mint_token({"a": 1})) == {"a": 1}


def test_the_api_tokens_are_references_or_the_tokens_themselves(
    settings: Settings, secrets_manager: Any
) -> None:
    control, _ = _secret(secrets_manager, CONTROL)
    by_reference = Settings.model_validate(
        {
            **settings.model_dump(),
            "control_plane_token": f"secretsmanager:{control}",
            "admin_token": ADMIN,
        }
    )
    assert tokens(by_reference) == (CONTROL, ADMIN)
    assert resolve_token(None, settings) is None


def test_a_missing_secret_stops_the_process_naming_the_reference(
    settings: Settings, secrets_manager: Any
) -> None:
    missing = f"secretsmanager:tpf-test/{uuid.uuid4().hex}"
    with pytest.raises(ConfigurationError, match="ResourceNotFoundException") as refused:
        resolve_secret(missing, settings)
    assert missing in str(refused.value)
    configured = settings.model_copy(update={"signing_key": missing})
    # No key lent by a local stack stands in for one asked for by name.
    with pytest.raises(ConfigurationError, match="Secrets Manager refused"):
        signer_for(configured)


def test_a_deleted_secret_is_refused(settings: Settings, secrets_manager: Any) -> None:
    arn, _ = _secret(secrets_manager, KEY)
    secrets_manager.delete_secret(SecretId=arn, RecoveryWindowInDays=7)
    with pytest.raises(ConfigurationError, match="refused to read it"):
        resolve_secret(f"secretsmanager:{arn}", settings)


def test_an_empty_secret_or_a_reference_without_settings_is_refused(
    settings: Settings, secrets_manager: Any
) -> None:
    blank, _ = _secret(secrets_manager, "  ")
    with pytest.raises(ConfigurationError, match="empty"):
        resolve_secret(f"secretsmanager:{blank}", settings)
    with pytest.raises(ConfigurationError, match="needs the process's settings"):
        resolve_secret(f"secretsmanager:{blank}")
    with pytest.raises(ConfigurationError, match="must start with"):
        resolve_secret("secretsmanager:", settings)
