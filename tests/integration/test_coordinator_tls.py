"""The coordinator's API over HTTPS with its own certificate (a deployment without a load
balancer): a client that trusts that certificate gets ``/q/health/ready``, plain HTTP gets
nothing, and the console's cookies are ``Secure``."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from coordinator.role import serve
from tests.certificates import self_signed
from tests.substrates import TestStack
from tests.waiting import eventually
from tpfctl.stack import free_port

TOKEN = "t" * 32


async def _answer(client: httpx.AsyncClient, url: str) -> httpx.Response | None:
    try:
        return await client.get(url)
    except httpx.TransportError:
        return None


@pytest.mark.timeout(60)
async def test_the_api_serves_https_with_the_configured_certificate(
    embedded_stack: TestStack, tmp_path: Path
) -> None:
    files = self_signed(tmp_path)
    key_file = tmp_path / "signing.key"
    key_file.write_text("k" * 32)
    port = free_port()
    settings = embedded_stack.settings.model_copy(
        update={
            "api_port": port,
            "signing_key": f"file:{key_file}",
            "control_plane_token": SecretStr(TOKEN),
            "admin_token": SecretStr(TOKEN[::-1] + "a"),
            "tls_certificate": f"file:{files.certificate}",
            "tls_key": f"file:{files.key}",
        }
    )
    stop = asyncio.Event()
    replica = asyncio.create_task(serve(settings, stop))
    trusting = ssl.create_default_context(cafile=str(files.certificate))
    base = f"https://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(verify=trusting, timeout=5) as client:

            async def ready() -> httpx.Response | None:
                assert not replica.done(), replica
                answer = await _answer(client, f"{base}/q/health/ready")
                return answer if answer is not None and answer.status_code == 200 else None

            assert (await eventually(ready, timeout=30, interval=0.1)).json() == {"status": "UP"}
            sign_in = await client.get(f"{base}/console/sign-in")
            cookie = sign_in.headers["set-cookie"].lower()
            assert "secure" in cookie and "httponly" in cookie
        async with httpx.AsyncClient(timeout=5) as plain:
            assert await _answer(plain, f"http://127.0.0.1:{port}/q/health/ready") is None
        async with httpx.AsyncClient(timeout=5) as untrusting:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.get(f"{base}/q/health/ready")
    finally:
        stop.set()
        await asyncio.wait_for(replica, timeout=30)
