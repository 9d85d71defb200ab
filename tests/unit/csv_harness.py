"""Driving the CSV payments pipeline over the in-memory coordinator with the real worker code:
a ``files`` fixture, uploads as the ingest channel submits them, and a provider that answers
from the request queue."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable

from coordinator.testing import InMemoryCoordinator
from examples.csv_payments.files import InMemoryFiles, etag_of, use_files
from examples.csv_payments.pipeline import csv_payments
from tests.unit.drive import WORKER, commands
from tpf.clock import now_ms
from tpf.queues import Outgoing
from tpf.runtime import InvocationRuntime
from tpf.settings import Settings
from tpf.wire import AwaitRequest, decode
from tpfctl.provider_mock import completion, default_decide
from worker.transition import run_transition

INBOX = "tpf-inbox"
HEADER = "ID,Recipient,Amount,Currency\n"


async def memory_files() -> AsyncIterator[InMemoryFiles]:
    """The files port in memory for one test: ``files = pytest.fixture(memory_files, ...)``."""
    store = InMemoryFiles()
    use_files(store)
    yield store
    use_files(None)


def coordinator(per_unit: int = 5, per_tenant: int = 8) -> InMemoryCoordinator:
    settings = Settings(
        profile="test",
        due_shards=2,
        await_unit_in_flight=per_unit,
        await_tenant_in_flight=per_tenant,
        submit_without_worker=True,
    )
    return InMemoryCoordinator.create(settings)


def rows(n: int, *, start: int = 1) -> str:
    return HEADER + "".join(f"p{i},Ada {i},{i}.50,EUR\n" for i in range(start, start + n))


async def upload(
    c: InMemoryCoordinator,
    files: InMemoryFiles,
    key: str,
    text: bytes | str,
    *,
    tenant_id: str = "acme",
) -> str:
    """Write a version of ``key`` and submit it as the ingest channel would (by its ETag)."""
    data = text.encode() if isinstance(text, str) else text
    await files.write(INBOX, key, data, "text/csv")
    outcome = await c.service.submit(
        tenant_id=tenant_id,
        pipeline_id=csv_payments.id,
        value={"bucket": INBOX, "key": key, "etag": etag_of(data)},
        idempotency_key=f"{key}:{etag_of(data)}",
        now_ms=now_ms(),
    )
    return outcome.record.execution_id


class Provider:
    """Answers what is on the request queue; records how many requests were out at once."""

    def __init__(self, c: InMemoryCoordinator) -> None:
        self.c = c
        self.most_out = 0
        self.requests: list[AwaitRequest] = []
        self.decide = default_decide

    async def answer(self, *, keep: Callable[[AwaitRequest], bool] = lambda r: True) -> int:
        self.most_out = max(self.most_out, len(self.c.await_requests.messages))
        answered = 0
        for message in await self.c.await_requests.receive(max_messages=10, wait_s=0):
            request = decode(message.body)
            assert isinstance(request, AwaitRequest)
            self.requests.append(request)
            await self.c.await_requests.delete(message.receipt)
            if keep(request):
                answer = self.decide(request.request_payload)
                await self.c.await_completions.send(Outgoing(completion(request, answer).to_json()))
                answered += 1
        return answered


async def run(c: InMemoryCoordinator, provider: Provider, **answer: object) -> None:
    """Work, answer and record until nothing moves."""
    while True:
        moved = 0
        for command in await commands(c):
            result = await run_transition(
                csv_payments,
                command,
                payloads=c.payloads,
                runtime=InvocationRuntime(),
                worker=WORKER,
            )
            await c.committer.commit(result, now_ms=command.deadline_epoch_ms - 1)
            moved += 1
        moved += await provider.answer(**answer)  # type: ignore[arg-type]
        received = await c.await_completions.receive(max_messages=10, wait_s=0)
        if received:
            await c.completions.handle_many(received)
            moved += len(received)
        if not moved:
            return


def output(files: InMemoryFiles, report: dict[str, object]) -> list[list[str]]:
    data = files.objects[(str(report["outputBucket"]), str(report["outputKey"]))]
    return list(csv.reader(io.StringIO(data.decode())))
