from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from tpf.errors import ConfigurationError
from tpf.secret_references import resolve_secret, resolve_token
from tpf.settings import Settings
from tpf.signing import SignatureRejected, Signer, SigningKey, signer_for
from tpf.wire import Heartbeat, WorkerIdentity

NOW = 1_800_000_000_000
CURRENT, PREVIOUS, OTHER = SigningKey(b"current"), SigningKey(b"previous"), SigningKey(b"other")
HEARTBEAT = Heartbeat(
    tenant_id="acme",
    execution_id="e-1",
    transition_key="e-1:0:1",
    execution_version=1,
    worker=WorkerIdentity(worker_id="w", release_version="1"),
    sent_at_epoch_ms=NOW,
)


def signed(signer: Signer | None = None, ttl_ms: int = 60_000) -> Heartbeat:
    return (signer or Signer(CURRENT)).sign(HEARTBEAT, channel="results", now_ms=NOW, ttl_ms=ttl_ms)


def test_a_signed_envelope_verifies_until_it_expires() -> None:
    signer = Signer(CURRENT)
    envelope = signed()
    signer.verify(envelope, channel="results", now_ms=NOW + 60_000)
    with pytest.raises(SignatureRejected, match="expired"):
        signer.verify(envelope, channel="results", now_ms=NOW + 60_001)


def test_a_late_redelivery_within_its_expiry_still_verifies() -> None:
    # SQS may hold a delayed retry for 900 s: no 2-minute window applies to queued commands.
    envelope = signed(ttl_ms=20 * 60_000)
    Signer(CURRENT).verify(envelope, channel="results", now_ms=NOW + 15 * 60_000)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda e: e.model_copy(update={"signature": None}), "unsigned"),
        (lambda e: e.model_copy(update={"execution_version": 2}), "bad signature"),
        (lambda e: e.model_copy(update={"transition_key": "e-1:0:2"}), "bad signature"),
    ],
)
def test_unsigned_and_tampered_envelopes_are_rejected(change: object, reason: str) -> None:
    with pytest.raises(SignatureRejected, match=reason):
        Signer(CURRENT).verify(change(signed()), channel="results", now_ms=NOW)  # type: ignore[operator]


def test_a_signature_for_one_channel_is_not_valid_on_another() -> None:
    with pytest.raises(SignatureRejected, match="bad signature"):
        Signer(CURRENT).verify(signed(), channel="work", now_ms=NOW)


def test_keys_rotate_current_and_previous_are_both_accepted() -> None:
    rotated = Signer(CURRENT, previous=PREVIOUS)
    rotated.verify(signed(Signer(PREVIOUS)), channel="results", now_ms=NOW)
    with pytest.raises(SignatureRejected, match="unknown key"):
        rotated.verify(signed(Signer(OTHER)), channel="results", now_ms=NOW)


def test_secrets_come_only_from_references(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory
) -> None:
    monkeypatch.setenv("MY_SECRET", "s3cret")
    assert resolve_secret("env:MY_SECRET") == b"s3cret"
    path = tmp_path / "key"  # type: ignore[operator]
    path.write_text("from-file\n")
    assert resolve_secret(f"file:{path}") == b"from-file"
    for bad in ("s3cret", "env:UNSET_VARIABLE_X", "file:/does/not/exist"):
        with pytest.raises(ConfigurationError):
            resolve_secret(bad)


def test_a_key_id_does_not_reveal_the_key() -> None:
    assert b"current" not in CURRENT.key_id.encode()
    assert CURRENT.key_id != PREVIOUS.key_id


def test_an_empty_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("\n")
    with pytest.raises(ConfigurationError, match="empty"):
        resolve_secret(f"file:{path}")


@pytest.mark.parametrize(
    ("endpoint", "lent"),
    [
        ("http://127.0.0.1:4566", True),
        ("http://localhost:4566", True),
        ("http://[::1]:4566", True),
        ("http://10.0.0.7:4566", False),
        ("https://sqs.eu-west-1.amazonaws.com", False),
        ("", False),
    ],
)
def test_only_a_stack_on_this_machine_lends_its_signing_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint: str, lent: bool
) -> None:
    key = tmp_path / "stack.key"
    key.write_text("stack-secret")
    settings = Settings(state_dir=tmp_path, signing_key="env:TPF_UNSET_SIGNING_SECRET")
    monkeypatch.delenv("TPF_UNSET_SIGNING_SECRET", raising=False)
    settings.state_file.write_text(
        json.dumps({"endpoint_url": endpoint, "signing_key": f"file:{key}"})
    )
    if lent:
        assert signer_for(settings).current.secret == b"stack-secret"
    else:
        with pytest.raises(ConfigurationError):
            signer_for(settings)


def test_an_api_token_is_read_as_a_reference_only_when_it_names_secrets_manager() -> None:
    settings = Settings(stack="tokens")
    for literal in ("env:looks-like-a-reference", "file:/etc/passwd", "plain-token-" + "x" * 16):
        assert resolve_token(SecretStr(literal), settings) == literal
    with pytest.raises(ConfigurationError, match="must start with"):
        resolve_token(SecretStr("secretsmanager:"), settings)
