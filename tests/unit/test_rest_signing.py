from __future__ import annotations

import pytest

from tpf.signing import (
    KEY_ID_HEADER,
    NONCE_HEADER,
    REST_WINDOW_MS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    NonceCache,
    SignatureRejected,
    Signer,
    SigningKey,
    parse_timestamp,
    request_signature,
)

NOW = 1_800_000_000_000
PATH = "/pipeline/worker/transitions/execute"
BODY = b'{"kind":"command"}'
CURRENT, PREVIOUS, OTHER = SigningKey(b"current"), SigningKey(b"previous"), SigningKey(b"other")


def signed(
    signer: Signer | None = None, *, method: str = "POST", at: int = NOW, body: bytes = BODY
) -> dict[str, str]:
    return (signer or Signer(CURRENT)).sign_request(method, PATH, body, now_ms=at)


def verify(
    headers: dict[str, str],
    *,
    signer: Signer | None = None,
    method: str = "POST",
    path: str = PATH,
    body: bytes = BODY,
    now: int = NOW,
    nonces: NonceCache | None = None,
) -> None:
    (signer or Signer(CURRENT)).verify_request(
        method, path, headers, body, now_ms=now, nonces=NonceCache() if nonces is None else nonces
    )


def test_a_signed_request_is_accepted_and_its_nonce_remembered() -> None:
    nonces = NonceCache()
    headers = signed()
    verify(headers, nonces=nonces)
    assert headers[NONCE_HEADER] in nonces


def test_headers_are_read_whatever_their_case() -> None:
    verify({name.lower(): value for name, value in signed().items()})


@pytest.mark.parametrize("missing", [TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER])
def test_a_request_missing_a_signature_header_is_unsigned(missing: str) -> None:
    headers = {k: v for k, v in signed().items() if k != missing}
    with pytest.raises(SignatureRejected, match="unsigned"):
        verify(headers)


def test_a_request_without_any_header_is_unsigned() -> None:
    with pytest.raises(SignatureRejected, match="unsigned"):
        verify({})


@pytest.mark.parametrize(
    "change",
    [
        {"body": b'{"kind":"command","attempt":7}'},
        {"body": b""},
        {"path": "/pipeline/worker/capabilities"},
        {"method": "PUT"},
    ],
    ids=["tampered-body", "emptied-body", "other-path", "other-method"],
)
def test_a_request_changed_after_signing_is_rejected(change: dict[str, object]) -> None:
    with pytest.raises(SignatureRejected, match="bad signature"):
        verify(signed(), **change)  # type: ignore[arg-type]


def test_a_tampered_signature_or_timestamp_is_rejected() -> None:
    headers = signed()
    forged = {**headers, SIGNATURE_HEADER: headers[SIGNATURE_HEADER][:-1] + "0"}
    if forged == headers:
        forged[SIGNATURE_HEADER] = headers[SIGNATURE_HEADER][:-1] + "1"
    with pytest.raises(SignatureRejected, match="bad signature"):
        verify(forged)
    with pytest.raises(SignatureRejected, match="bad signature"):
        verify({**headers, TIMESTAMP_HEADER: str(NOW + 1)})


def test_a_request_is_accepted_up_to_the_window_edge_either_way() -> None:
    verify(signed(at=NOW - REST_WINDOW_MS))
    verify(signed(at=NOW + REST_WINDOW_MS))


def test_a_request_older_than_the_window_has_expired() -> None:
    with pytest.raises(SignatureRejected, match="expired"):
        verify(signed(at=NOW - REST_WINDOW_MS - 1))


def test_a_request_from_further_ahead_than_the_window_is_skewed() -> None:
    with pytest.raises(SignatureRejected, match="skew"):
        verify(signed(at=NOW + REST_WINDOW_MS + 1))


def test_a_replayed_request_is_rejected() -> None:
    nonces = NonceCache()
    headers = signed()
    verify(headers, nonces=nonces)
    with pytest.raises(SignatureRejected, match="replayed"):
        verify(headers, nonces=nonces, now=NOW + 1_000)


def test_a_forged_request_does_not_burn_the_nonce_it_carries() -> None:
    nonces = NonceCache()
    genuine = signed()
    with pytest.raises(SignatureRejected, match="bad signature"):
        verify({**genuine, SIGNATURE_HEADER: "00" * 32}, nonces=nonces)
    verify(genuine, nonces=nonces)


def test_the_previous_key_is_accepted_after_rotation() -> None:
    rotated = Signer(CURRENT, previous=PREVIOUS)
    by_previous = signed(Signer(PREVIOUS))
    verify(by_previous, signer=rotated)  # the key id header picks the key
    without_id = {k: v for k, v in signed(Signer(PREVIOUS)).items() if k != KEY_ID_HEADER}
    verify(without_id, signer=rotated)  # each key is tried


def test_a_request_signed_with_an_unknown_key_is_rejected() -> None:
    rotated = Signer(CURRENT, previous=PREVIOUS)
    with pytest.raises(SignatureRejected, match="unknown key"):
        verify(signed(Signer(OTHER)), signer=rotated)
    without_id = {k: v for k, v in signed(Signer(OTHER)).items() if k != KEY_ID_HEADER}
    with pytest.raises(SignatureRejected, match="bad signature"):
        verify(without_id, signer=rotated)


def test_a_key_id_header_cannot_vouch_for_a_signature_by_another_key() -> None:
    rotated = Signer(CURRENT, previous=PREVIOUS)
    by_previous = signed(Signer(PREVIOUS))
    with pytest.raises(SignatureRejected, match="bad signature"):
        verify({**by_previous, KEY_ID_HEADER: CURRENT.key_id}, signer=rotated)


def test_a_malformed_timestamp_or_oversized_nonce_is_rejected() -> None:
    headers = signed()
    with pytest.raises(SignatureRejected, match="malformed timestamp"):
        verify({**headers, TIMESTAMP_HEADER: "yesterday"})
    with pytest.raises(SignatureRejected, match="malformed nonce"):
        verify({**headers, NONCE_HEADER: "n" * 500})


def test_the_canonical_string_matches_the_vector_tpf_pins() -> None:
    # TPF's own clients send an ISO-8601 instant; the signature covers the header as sent.
    body = b'{"outcome":"COMPLETED"}'
    timestamp = "2026-09-14T10:15:30Z"
    signature = request_signature(b"worker-secret", "POST", PATH, timestamp, "nonce-1", body)
    assert signature == "e22366b38e2b071ccc7e31df9d7c4f7ad13d0b6ac17d2ef0b0f43e89cfb53523"
    assert parse_timestamp(timestamp) == 1_789_380_930_000
    headers = {TIMESTAMP_HEADER: timestamp, NONCE_HEADER: "nonce-1", SIGNATURE_HEADER: signature}
    verify(headers, signer=Signer(SigningKey(b"worker-secret")), body=body, now=1_789_380_930_000)


def test_the_nonce_cache_forgets_a_nonce_once_its_window_has_passed() -> None:
    nonces = NonceCache(window_ms=1_000)
    nonces.remember("a", until_ms=NOW + 1_000, now_ms=NOW)
    nonces.remember("b", until_ms=NOW + 2_000, now_ms=NOW + 1_000)
    assert len(nonces) == 2
    nonces.remember("c", until_ms=NOW + 3_000, now_ms=NOW + 1_001)
    assert ("a" in nonces, len(nonces)) == (False, 2)


def test_a_full_nonce_cache_refuses_until_entries_expire() -> None:
    nonces = NonceCache(window_ms=1_000, capacity=2)
    nonces.remember("a", until_ms=NOW + 1_000, now_ms=NOW)
    nonces.remember("b", until_ms=NOW + 1_000, now_ms=NOW)
    with pytest.raises(SignatureRejected, match="replay cache full"):
        nonces.remember("c", until_ms=NOW + 1_000, now_ms=NOW)
    assert "a" in nonces  # refused, not forgotten: forgetting a live nonce would reopen a replay
    nonces.remember("c", until_ms=NOW + 2_001, now_ms=NOW + 1_001)
    assert len(nonces) == 1
