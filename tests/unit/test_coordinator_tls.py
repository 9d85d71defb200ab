"""HTTPS settings of the coordinator's API fail closed: half a pair, or a key that is not the
certificate's, stops the replica at start. (Serving over HTTPS: ``tests/integration``.)"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import uvicorn

from coordinator.tls import loaded, tls_pair
from tests.certificates import self_signed
from tpf.errors import ConfigurationError
from tpf.settings import Settings


def _app() -> None:
    """Never called: loading a config builds its TLS context, not the app."""


def test_without_certificate_or_key_the_api_serves_plain_http() -> None:
    assert tls_pair(Settings()) is None


@pytest.mark.parametrize("given", ["tls_certificate", "tls_key"])
def test_a_certificate_without_its_key_or_the_other_way_round_refuses_to_start(
    given: str, tmp_path: Path
) -> None:
    files = self_signed(tmp_path)
    path = files.certificate if given == "tls_certificate" else files.key
    missing = "TPF_TLS_KEY" if given == "tls_certificate" else "TPF_TLS_CERTIFICATE"
    with pytest.raises(ConfigurationError, match=f"{missing} is unset"):
        tls_pair(Settings(**{given: f"file:{path}"}))


def test_a_key_of_another_certificate_refuses_to_start(tmp_path: Path) -> None:
    ours, theirs = self_signed(tmp_path, "ours"), self_signed(tmp_path, "theirs")
    settings = Settings(tls_certificate=f"file:{ours.certificate}", tls_key=f"file:{theirs.key}")
    pair = tls_pair(settings)
    config = uvicorn.Config(_app, port=0, lifespan="off")
    with pytest.raises(ConfigurationError, match="not a PEM certificate and its key"):
        loaded(config, pair)


def test_a_loaded_pair_leaves_no_copy_of_the_key_on_disk(tmp_path: Path) -> None:
    files = self_signed(tmp_path)
    settings = Settings(tls_certificate=f"file:{files.certificate}", tls_key=f"file:{files.key}")
    config = loaded(uvicorn.Config(_app, port=0, lifespan="off"), tls_pair(settings))
    assert isinstance(config.ssl, ssl.SSLContext)
    assert config.ssl_keyfile is not None and not Path(config.ssl_keyfile).exists()
