"""HTTPS on the coordinator's own API, for a deployment with no load balancer to end TLS.

The certificate chain and its private key are secret references (``TPF_TLS_CERTIFICATE``,
``TPF_TLS_KEY``: ``file:``, ``env:`` or ``secretsmanager:``), read once at start like the signing
key. One without the other stops the replica at start: an API meant to be private must not come
up in plain HTTP because a variable was mistyped. The TLS library loads only files, so the pair
is written to a directory only this user may read, loaded, and removed before the API listens.
"""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from tpf.errors import ConfigurationError
from tpf.secret_references import resolve_secret
from tpf.settings import Settings


@dataclass(frozen=True)
class TlsPair:
    certificate: bytes
    """PEM: the server's certificate, then any intermediates."""
    key: bytes


def tls_pair(settings: Settings) -> TlsPair | None:
    """The configured certificate and key, or None when the API serves plain HTTP."""
    certificate, key = settings.tls_certificate, settings.tls_key
    if certificate is None and key is None:
        return None
    if certificate is None or key is None:
        missing = "TPF_TLS_CERTIFICATE" if certificate is None else "TPF_TLS_KEY"
        raise ConfigurationError(
            f"HTTPS needs both TPF_TLS_CERTIFICATE and TPF_TLS_KEY (secret references to the "
            f"PEM certificate chain and its key); {missing} is unset"
        )
    return TlsPair(resolve_secret(certificate, settings), resolve_secret(key, settings))


def loaded(config: uvicorn.Config, tls: TlsPair | None) -> uvicorn.Config:
    """``config`` loaded, serving HTTPS with ``tls`` when given; ready for ``Server.serve``."""
    if tls is None:
        config.load()
        return config
    with tempfile.TemporaryDirectory(prefix="tpf-tls-") as private:  # created 0700
        files = {"certificate.pem": tls.certificate, "key.pem": tls.key}
        for name, content in files.items():
            path = Path(private) / name
            path.touch(mode=0o600)
            path.write_bytes(content.strip() + b"\n")
        config.ssl_certfile = str(Path(private) / "certificate.pem")
        config.ssl_keyfile = str(Path(private) / "key.pem")
        try:
            config.load()  # builds the SSL context: the files are not read again
        except (ssl.SSLError, OSError) as exc:
            raise ConfigurationError(
                f"TPF_TLS_CERTIFICATE and TPF_TLS_KEY are not a PEM certificate and its key: {exc}"
            ) from exc
    return config
