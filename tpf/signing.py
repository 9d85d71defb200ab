"""Signatures on both worker transports (REFERENCE section 4).

**SQS** (asynchronous): a command may legitimately arrive late (backlog, a 900 s retry delay) or
twice (redelivery), so SQS signatures carry an explicit expiry instead of a 2-minute window and a
nonce cache; replay protection comes from fencing (transition key + version). The canonical
string::

    SQS\\n<channel>\\n<issuedAt>\\n<expiresAt>\\n<nonce>\\n<sha256(body) hex>

**REST** (synchronous, TPF's worker endpoint): each HTTP request is signed in headers over::

    METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\n<sha256(body) hex>

and accepted only within a 2-minute window either side of the receiver's clock, once: its nonce
is remembered until its timestamp leaves the window (:class:`NonceCache`), after which the window
itself refuses it. A request is checked in this order, so that nothing unauthenticated can fill
the nonce cache::

    headers present ─ timestamp in window ─ signature (current or previous key) ─ nonce unseen

Keys come from secret references (``env:``, ``file:``, ``secretsmanager:``, see
:mod:`tpf.secret_references`); the previous key is accepted too, so keys rotate without a flag day.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import ipaddress
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar
from urllib.parse import urlsplit

from tpf.errors import ConfigurationError, TpfError
from tpf.secret_references import SECRETS_MANAGER, resolve_secret
from tpf.settings import Settings
from tpf.substrate import read_state
from tpf.wire import Signature, Wire

W = TypeVar("W", bound=Wire)

TIMESTAMP_HEADER = "X-TPF-Worker-Timestamp"
NONCE_HEADER = "X-TPF-Worker-Nonce"
SIGNATURE_HEADER = "X-TPF-Worker-Signature"
KEY_ID_HEADER = "X-TPF-Worker-Key-Id"
"""Optional: names the key that signed, so the receiver need not try each one."""
REST_WINDOW_MS = 120_000
"""How far a REST request's timestamp may lie from the receiver's clock, either way."""
MAX_NONCE_LENGTH = 128
"""Keeps the nonce cache's memory bounded by its capacity."""


class SignatureRejected(TpfError):
    """A message whose signature is missing, unknown, wrong or expired. Never executed."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"signature rejected: {reason}")
        self.reason = reason


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class SigningKey:
    secret: bytes

    @property
    def key_id(self) -> str:
        """Names the key without revealing it."""
        return hashlib.sha256(b"tpf-key-id:" + self.secret).hexdigest()[:12]


PROVIDER_CHANNEL = "provider-completion"
"""What a provider's own key signs: its completions on the provider lane."""


class ProviderKeys:
    """Each payment (or other) provider's own key, on top of the resume token its completions
    echo: a completion must then be signed (``Signer.sign(..., channel=PROVIDER_CHANNEL)``)
    with the key of one of them, and names its provider by the key's id."""

    def __init__(self, keys: Mapping[str, SigningKey]) -> None:
        self._by_id = {key.key_id: (name, Signer(key)) for name, key in keys.items()}

    @classmethod
    def from_references(
        cls, references: Mapping[str, str], *, settings: Settings | None = None
    ) -> ProviderKeys:
        """``{provider: secret reference}``, each read once, here (fails closed)."""
        return cls(
            {name: SigningKey(resolve_secret(ref, settings)) for name, ref in references.items()}
        )

    def __bool__(self) -> bool:
        return bool(self._by_id)

    def verify(self, envelope: object, *, now_ms: int) -> str:
        """The provider whose key signed ``envelope``, or :class:`SignatureRejected`."""
        signature: Signature | None = getattr(envelope, "signature", None)
        if signature is None or not isinstance(envelope, Wire):
            raise SignatureRejected("unsigned")
        found = self._by_id.get(signature.key_id)
        if found is None:
            raise SignatureRejected("unknown key")
        name, signer = found
        signer.verify(envelope, channel=PROVIDER_CHANNEL, now_ms=now_ms)
        return name


class Signer:
    def __init__(self, current: SigningKey, previous: SigningKey | None = None) -> None:
        self.current = current
        self._keys = {k.key_id: k for k in (current, previous) if k is not None}

    @classmethod
    def from_references(
        cls, current: str, previous: str | None = None, *, settings: Settings | None = None
    ) -> Signer:
        """Keys read once, here; ``settings`` locate Secrets Manager for its references."""
        return cls(
            SigningKey(resolve_secret(current, settings)),
            SigningKey(resolve_secret(previous, settings)) if previous else None,
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
        if not hmac.compare_digest(expected.encode(), signature.value.encode()):
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
        if not hmac.compare_digest(expected.encode(), tag.encode()):
            raise SignatureRejected("bad token signature")
        try:
            claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except ValueError as exc:
            raise SignatureRejected("malformed token") from exc
        if not isinstance(claims, dict):
            raise SignatureRejected("malformed token")
        return claims

    # -- REST requests ---------------------------------------------------------------------------

    def sign_request(self, method: str, path: str, body: bytes, *, now_ms: int) -> dict[str, str]:
        """The headers that sign one HTTP request with the current key."""
        timestamp, nonce = str(now_ms), secrets.token_hex(16)
        return {
            TIMESTAMP_HEADER: timestamp,
            NONCE_HEADER: nonce,
            SIGNATURE_HEADER: request_signature(
                self.current.secret, method, path, timestamp, nonce, body
            ),
            KEY_ID_HEADER: self.current.key_id,
        }

    def verify_request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        now_ms: int,
        nonces: NonceCache,
    ) -> None:
        """Accept a signed request once, within the window; else raise SignatureRejected.

        ``headers`` is looked up case-insensitively. The nonce is recorded only once the
        signature holds, so forged requests cannot fill the cache or burn a genuine nonce.
        """
        found = {name.lower(): value for name, value in headers.items()}
        timestamp = found.get(TIMESTAMP_HEADER.lower(), "").strip()
        nonce = found.get(NONCE_HEADER.lower(), "").strip()
        provided = found.get(SIGNATURE_HEADER.lower(), "").strip()
        if not (timestamp and nonce and provided):
            raise SignatureRejected("unsigned")
        if len(nonce) > MAX_NONCE_LENGTH:
            raise SignatureRejected("malformed nonce")
        issued_ms = parse_timestamp(timestamp)
        if now_ms - issued_ms > nonces.window_ms:
            raise SignatureRejected("expired")
        if issued_ms - now_ms > nonces.window_ms:
            raise SignatureRejected("skew")
        key_id = found.get(KEY_ID_HEADER.lower(), "").strip()
        if key_id:
            key = self._keys.get(key_id)
            if key is None:
                raise SignatureRejected("unknown key")
            candidates = [key]
        else:
            candidates = list(self._keys.values())
        matched = False
        for key in candidates:  # every key is tried, so timing does not tell which one matched
            expected = request_signature(key.secret, method, path, timestamp, nonce, body)
            matched |= hmac.compare_digest(expected.encode(), provided.encode())
        if not matched:
            raise SignatureRejected("bad signature")
        nonces.remember(nonce, until_ms=issued_ms + nonces.window_ms, now_ms=now_ms)


class NonceCache:
    """Nonces of accepted REST requests, each kept only while its request could still verify.

    A request is valid while its timestamp lies within ``window_ms`` of the clock, so its nonce
    is kept until ``timestamp + window_ms`` and forgotten after: by then the window refuses a
    replay on its own. Memory is bounded by ``capacity`` entries of at most
    ``MAX_NONCE_LENGTH`` characters; a full cache refuses new requests rather than forget a live
    nonce (forgetting would reopen a replay). Single event loop, no locking.
    """

    def __init__(self, *, window_ms: int = REST_WINDOW_MS, capacity: int = 100_000) -> None:
        self.window_ms, self.capacity = window_ms, capacity
        self._until: dict[str, int] = {}
        self._expiries: list[tuple[int, str]] = []  # a heap: the next nonce to forget first

    def __len__(self) -> int:
        return len(self._until)

    def __contains__(self, nonce: object) -> bool:
        return nonce in self._until

    def remember(self, nonce: str, *, until_ms: int, now_ms: int) -> None:
        """Record ``nonce`` as used until ``until_ms``; SignatureRejected if seen or full."""
        self._forget_expired(now_ms)
        if nonce in self._until:
            raise SignatureRejected("replayed")
        if len(self._until) >= self.capacity:
            raise SignatureRejected("replay cache full")
        self._until[nonce] = until_ms
        heapq.heappush(self._expiries, (until_ms, nonce))

    def _forget_expired(self, now_ms: int) -> None:
        while self._expiries and self._expiries[0][0] < now_ms:
            _, nonce = heapq.heappop(self._expiries)
            del self._until[nonce]


def request_signature(
    secret: bytes, method: str, path: str, timestamp: str, nonce: str, body: bytes
) -> str:
    """Lowercase hex HMAC-SHA256 of a REST request's canonical string."""
    canonical = "\n".join(
        (method.upper(), _normal_path(path), timestamp, nonce, hashlib.sha256(body).hexdigest())
    )
    return hmac.new(secret, canonical.encode(), hashlib.sha256).hexdigest()


def parse_timestamp(value: str) -> int:
    """Epoch milliseconds from a timestamp header: epoch ms as we send it, or the ISO-8601
    instant TPF's own clients send. The signature covers the header as sent, so both verify."""
    if value.isascii() and value.isdigit() and len(value) <= 16:
        return int(value)
    try:
        instant = datetime.fromisoformat(value)
    except ValueError as exc:
        raise SignatureRejected("malformed timestamp") from exc
    if instant.tzinfo is None:
        raise SignatureRejected("malformed timestamp")
    return int(instant.timestamp() * 1000)


def _normal_path(path: str) -> str:
    if not path.strip():
        return "/"
    return path if path.startswith("/") else "/" + path


def _mac(key: SigningKey, channel: str, issued: int, expires: int, nonce: str, body: bytes) -> str:
    canonical = "\n".join(
        ("SQS", channel, str(issued), str(expires), nonce, hashlib.sha256(body).hexdigest())
    )
    digest = hmac.new(key.secret, canonical.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def signer_for(settings: Settings) -> Signer:
    """The process's signer: the configured key references, or else the key of the stack that
    ``tpf up`` owns (its state file names it), so a worker started in another terminal joins."""
    try:
        return Signer.from_references(
            settings.signing_key, settings.signing_key_previous, settings=settings
        )
    except ConfigurationError:
        # A key kept in Secrets Manager was asked for by name: never stand a local one in for it.
        if settings.signing_key.startswith(f"{SECRETS_MANAGER}:"):
            raise
        state = read_state(settings) or {}
        reference = state.get("signing_key")
        # Only a stack on this machine lends its key: never one whose services are elsewhere.
        if not reference or not _loopback(str(state.get("endpoint_url", ""))):
            raise
        return Signer.from_references(str(reference))


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
