"""The embedded substrate: moto's server on a free loopback port, in the process that owns it.

Only commands that own a stack start one (``tpf demo``, ``tpf up``, test fixtures, the crash
harness); they never get killed during a run and hand the endpoint to the processes they start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx
from moto.server import ThreadedMotoServer


@dataclass
class EmbeddedSubstrate:
    server: ThreadedMotoServer
    endpoint_url: str

    @classmethod
    def start(cls, host: str = "127.0.0.1", port: int = 0) -> EmbeddedSubstrate:
        # moto logs every request at INFO through werkzeug; a demo's output should stay readable.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        server.start()
        bound_host, bound_port = server.get_host_and_port()
        return cls(server=server, endpoint_url=f"http://{bound_host}:{bound_port}")

    def reset(self) -> None:
        """Forget every resource (between tests)."""
        httpx.post(f"{self.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()

    def stop(self) -> None:
        self.server.stop()
