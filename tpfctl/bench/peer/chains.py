"""Celery workers for the peer, started and stopped by the benchmark, and one timed round.

Each worker is a ``celery worker --pool threads`` process started like a fleet member
(:func:`tpfctl.lifeline.spawn`: a process group of its own, following this process), so none
outlives the benchmark. Its queues carry a prefix of this run's own and are deleted at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import boto3

from tpf.errors import ConfigurationError
from tpfctl import lifeline
from tpfctl.bench import observe
from tpfctl.bench.drive import plain_input
from tpfctl.bench.peer import celery_app
from tpfctl.bench.peer.result import Timed

READY_TIMEOUT_S = 60.0
POLL_S = 0.05
STOP_GRACE_S = 15.0


@dataclass(frozen=True)
class Shape:
    workers: int
    threads: int
    submit_lanes: int


class Peer:
    def __init__(self, endpoint: str, workdir: Path, shape: Shape) -> None:
        self.endpoint, self.workdir, self.shape = endpoint, workdir / "peer", shape
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.queue_prefix = f"peer-{uuid.uuid4().hex[:6]}-"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[IO[bytes]] = []
        self.publisher = celery_app.client(
            endpoint, self.queue_prefix, submit_lanes=shape.submit_lanes
        )

    def done_file(self, number: int) -> Path:
        return self.workdir / f"worker-{number}.done"

    def log_file(self, number: int) -> Path:
        return self.workdir / f"worker-{number}.log"

    def start(self) -> None:
        for number in range(1, self.shape.workers + 1):
            ready = self.workdir / f"worker-{number}.ready"
            env = celery_app.worker_env(
                self.endpoint, self.queue_prefix, ready, self.done_file(number)
            )
            log = self.log_file(number).open("ab")
            self.logs.append(log)
            self.processes.append(
                lifeline.spawn(
                    _worker_args(number, self.shape.threads),
                    env={**os.environ, **env},
                    stdout=log,
                    stderr=log,
                )
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        readies = [self.workdir / f"worker-{n}.ready" for n in range(1, self.shape.workers + 1)]
        while not all(r.exists() for r in readies):
            self._check_alive()
            if time.monotonic() > deadline:
                raise ConfigurationError(f"Celery workers not ready within {READY_TIMEOUT_S:.0f}s")
            time.sleep(POLL_S)

    def _check_alive(self) -> None:
        for number, process in enumerate(self.processes, start=1):
            if process.poll() is not None:
                tail = self.log_file(number).read_text(errors="replace")[-2000:]
                raise ConfigurationError(
                    f"Celery worker {number} exited with {process.returncode}:\n{tail}"
                )

    def run(self, tag: str, executions: int, *, timeout_s: float = 300.0) -> Timed:
        """``executions`` chains submitted at once over the submit lanes; waits for them all."""
        print(f"  celery {tag}: {executions} chains at once", file=sys.stderr)
        ids = [f"{tag}-{i}" for i in range(executions)]
        cpu_before = self._cpu_seconds()
        submitted_at = time.time()
        with ThreadPoolExecutor(self.shape.submit_lanes) as lanes:
            # Consuming the results re-raises the first failed submit, if any.
            list(
                lanes.map(
                    lambda i: celery_app.submit(self.publisher, plain_input(i), ids[i]),
                    range(executions),
                )
            )
        finished = self._wait_done(set(ids), timeout_s)
        cpu_after = self._cpu_seconds()
        return Timed(
            executions,
            submitted_at,
            max(finished.values()),
            {"COMPLETED": executions},
            cpu_seconds=None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
        )

    def _cpu_seconds(self) -> float | None:
        """The workers' CPU time together: a thread pool runs every task in its worker's process."""
        spent = [observe.cpu_seconds(p.pid) for p in self.processes]
        return None if None in spent else sum(s for s in spent if s is not None)

    def _wait_done(self, ids: set[str], timeout_s: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout_s
        while True:
            finished = {eid: at for eid, at in self._finished() if eid in ids}
            if len(finished) == len(ids):
                return finished
            self._check_alive()
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"{len(ids) - len(finished)} of {len(ids)} Celery chains not finished "
                    f"within {timeout_s:.0f}s; see {self.workdir}"
                )
            time.sleep(POLL_S)

    def _finished(self) -> Iterator[tuple[str, float]]:
        for number in range(1, self.shape.workers + 1):
            with contextlib.suppress(FileNotFoundError):
                for line in self.done_file(number).read_text().splitlines():
                    eid, at = line.split()
                    yield eid, float(at)

    def stop(self) -> None:
        for process in self.processes:
            lifeline.signal_group(process, signal.SIGTERM)  # all drain at once
        for process in self.processes:
            lifeline.stop_group(process, grace=STOP_GRACE_S)
        for log in self.logs:
            log.close()
        self.publisher.close()
        self._delete_queues()

    def _delete_queues(self) -> None:
        key, secret, region = celery_app.credentials()
        sqs = boto3.client(
            "sqs",
            endpoint_url=self.endpoint,
            region_name=region,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )
        found = sqs.list_queues(QueueNamePrefix=self.queue_prefix).get("QueueUrls", [])
        for url in found:
            with contextlib.suppress(sqs.exceptions.QueueDoesNotExist):
                sqs.delete_queue(QueueUrl=url)


@contextlib.contextmanager
def started(endpoint: str, workdir: Path, shape: Shape) -> Iterator[Peer]:
    peer = Peer(endpoint, workdir, shape)
    try:
        peer.start()
        yield peer
    finally:
        peer.stop()


def _worker_args(number: int, threads: int) -> list[str]:
    return [
        sys.executable,
        *("-m", "celery", "-A", "tpfctl.bench.peer.celery_app", "worker"),
        *("--pool", "threads", "--concurrency", str(threads)),
        *("--hostname", f"peer{number}@%h", "--loglevel", "WARNING"),
        # Gossip, mingle and heartbeats need broadcast, which SQS does not have.
        *("--without-gossip", "--without-mingle", "--without-heartbeat"),
    ]
