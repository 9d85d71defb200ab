"""Signed envelopes on asynchronous channels (REFERENCE section 4).

A command may legitimately arrive late (backlog, a 900 s retry delay) or twice (redelivery), so
SQS signatures carry an explicit expiry instead of a 2-minute window and a nonce cache; replay
protection comes from fencing (transition key + version). The canonical string::

    SQS\\n<channel>\\n<issuedAt>\\n<expiresAt>\\n<nonce>\\n<sha256(body) hex>

Keys come from secret references (``env:NAME``, ``file:PATH``); the previous key is accepted
too, so keys rotate without a flag day.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tpf.errors import ConfigurationError, TpfError
from tpf.wire import Signature, Wire

W = TypeVar("W", bound=Wire)


class SignatureRejected(TpfError):
    """A message whose signature is missing, unknown, wrong or expired. Never executed."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"signature rejected: {reason}")
        self.reason = reason


def resolve_secret(reference: str) -> bytes:
    """``env:NAME`` or ``file:PATH``; anything else is refused so secrets stay out of config."""
    scheme, _, target = reference.partition(":")
    if scheme == "env":
        value = os.environ.get(target)
        if not value:
            raise ConfigurationError(f"secret reference {reference!r}: variable {target} is unset")
        return value.encode()
    if scheme == "file":
        try:
            return Path(target).read_bytes().strip()
        except OSError as exc:
            raise ConfigurationError(f"secret reference {reference!r}: {exc.strerror}") from exc
    raise ConfigurationError(f"secret reference {reference!r} must start with env: or file:")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class SigningKey:
    secret: bytes

    @property
    def key_id(self) -> str:
        """Names the key without revealing it."""
        return hashlib.sha256(b"tpf-key-id:" + self.secret).hexdigest()[:12]


class Signer:
    def __init__(self, current: SigningKey, previous: SigningKey | None = None) -> None:
        self.current = current
        self._keys = {k.key_id: k for k in (current, previous) if k is not None}

    @classmethod
    def from_references(cls, current: str, previous: str | None = None) -> Signer:
        return cls(
            SigningKey(resolve_secret(current)),
            SigningKey(resolve_secret(previous)) if previous else None,
        )

    def sign(self, envelope: W, *, channel: str, now_ms: int, ttl_ms: int) -> W:
        nonce = secrets.token_hex(8)
        expires = now_ms + ttl_ms
        value = _mac(self.current, channel, now_ms, expires, nonce, envelope.signed_body())
        signature = Signature(
            key_id=self.current.key_id,
            issued_at_epoch_ms=now_ms,
            expires_at_epoch_ms=expires,
            nonce=nonce,
            value=value,
        )
        return envelope.model_copy(update={"signature": signature})

    def verify(self, envelope: Wire, *, channel: str, now_ms: int) -> None:
        signature: Signature | None = getattr(envelope, "signature", None)
        if signature is None:
            raise SignatureRejected("unsigned")
        key = self._keys.get(signature.key_id)
        if key is None:
            raise SignatureRejected("unknown key")
        expected = _mac(
            key,
            channel,
            signature.issued_at_epoch_ms,
            signature.expires_at_epoch_ms,
            signature.nonce,
            envelope.signed_body(),
        )
        if not hmac.compare_digest(expected, signature.value):
            raise SignatureRejected("bad signature")
        if now_ms > signature.expires_at_epoch_ms:
            raise SignatureRejected("expired")

    def mint_token(self, claims: dict[str, object]) -> str:
        """A bearer token carrying ``claims``, HMAC-SHA256 signed (resume tokens)."""
        body = base64.urlsafe_b64encode(
            json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()
        ).rstrip(b"=")
        mac = hmac.new(self.current.secret, b"tpf-token." + body, hashlib.sha256).digest()
        tag = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
        return f"{self.current.key_id}.{body.decode()}.{tag}"

    def read_token(self, token: str) -> dict[str, object]:
        """The claims of a token minted with our current or previous key; else SignatureRejected."""
        key_id, _, rest = token.partition(".")
        body, _, tag = rest.partition(".")
        key = self._keys.get(key_id)
        if key is None or not body or not tag:
            raise SignatureRejected("malformed or unknown token")
        mac = hmac.new(key.secret, b"tpf-token." + body.encode(), hashlib.sha256).digest()
        expected = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
        if not hmac.compare_digest(expected, tag):
            raise SignatureRejected("bad token signature")
        try:
            claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except ValueError as exc:
            raise SignatureRejected("malformed token") from exc
        if not isinstance(claims, dict):
            raise SignatureRejected("malformed token")
        return claims


def _mac(key: SigningKey, channel: str, issued: int, expires: int, nonce: str, body: bytes) -> str:
    canonical = "\n".join(
        ("SQS", channel, str(issued), str(expires), nonce, hashlib.sha256(body).hexdigest())
    )
    digest = hmac.new(key.secret, canonical.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
