"""Random operation sequences against the execution store, checking the invariants that matter.

Operations are applied to *snapshots* the machine has seen, fresh or stale, the way racing
coordinators, late workers and sweepers would apply them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from coordinator.store import ExecutionStore
from coordinator.store.memory import InMemoryExecutionTable
from coordinator.store.search import ExecutionQuery
from tpf.errors import StaleRecord
from tpf.payloads import PayloadRef
from tpf.records import ExecutionRecord, Status, new_execution

OUT = PayloadRef.of_inline('{"ok":true}')


class ExecutionLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = ExecutionStore(InMemoryExecutionTable(shards=2))
        self.now = 1_000_000
        self.seen: list[ExecutionRecord] = []
        self.last: ExecutionRecord | None = None
        self.keys_committed: set[str] = set()

    def teardown(self) -> None:
        self.loop.close()

    def run(self, op: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(op)

    def current(self) -> ExecutionRecord:
        record = self.run(self.store.get("acme", self.seen[0].execution_id))
        assert record is not None
        return record

    @initialize()
    def submit(self) -> None:
        record = new_execution(
            tenant_id="acme",
            pipeline_id="p",
            idempotency_key="k",
            contract_version="sha256:00",
            release_version="1",
            input=PayloadRef.of_inline("{}"),
            now_ms=self.now,
        )
        self.run(self.store.submit(record, now_ms=self.now))
        self.seen.append(record)
        self.last = record

    def attempt(
        self,
        snapshot: ExecutionRecord,
        change: Callable[[ExecutionRecord], Awaitable[ExecutionRecord]],
        *,
        key: str | None = None,
    ) -> None:
        before = self.current()
        self.now += 7
        try:
            after = self.run(change(snapshot))
        except StaleRecord as exc:
            assert exc.current == before  # the error carries the record as it is
            return
        # The write applied: it must have been computed from the current record.
        assert snapshot.version == before.version, "a stale version was committed"
        if key is not None:
            assert key == before.transition_key, "a stale transition key was committed"
            assert key not in self.keys_committed, "a transition committed twice"
            self.keys_committed.add(key)
        assert after == self.current()
        self.seen.append(after)

    @rule(data=st.data())
    def dispatch(self, data: st.DataObject) -> None:
        snap = data.draw(st.sampled_from(self.seen))
        self.attempt(
            snap, lambda r: self.store.dispatch(r, now_ms=self.now, deadline_ms=self.now + 50)
        )

    @rule(data=st.data())
    def sweeper_dispatch(self, data: st.DataObject) -> None:
        snap = data.draw(st.sampled_from(self.seen))
        self.attempt(
            snap,
            lambda r: self.store.dispatch(
                r, now_ms=self.now, deadline_ms=self.now + 50, only_if_due=True
            ),
        )

    @rule(
        data=st.data(),
        outcome=st.sampled_from(["succeed", "advance", "park", "retry", "dlq", "fail"]),
    )
    def commit(self, data: st.DataObject, outcome: str) -> None:
        # A result pairs the coordinator's fresh-or-stale read with the key of whichever
        # command the worker ran, which may be an older one.
        snap = data.draw(st.sampled_from(self.seen))
        key = data.draw(st.sampled_from(self.seen)).transition_key or "none"
        store, now = self.store, self.now
        changes: dict[str, Callable[[ExecutionRecord], Awaitable[ExecutionRecord]]] = {
            "succeed": lambda r: store.succeed(r, transition_key=key, result=OUT, now_ms=now),
            "advance": lambda r: store.advance(
                r,
                transition_key=key,
                step_index=r.step_index + 1,
                continuation=OUT,
                now_ms=now,
                dispatch_deadline_ms=now + 50,
            ),
            "park": lambda r: store.park(
                r,
                transition_key=key,
                await_unit_id=f"u{r.version}",
                step_index=r.step_index + 1,
                continuation=None,
                now_ms=now,
                due_at_ms=now + 1_000,
            ),
            "retry": lambda r: store.retry(
                r, transition_key=key, error_code="E", message="m", due_at_ms=now + 20, now_ms=now
            ),
            "dlq": lambda r: store.fail(
                r, transition_key=key, status=Status.DLQ, error_code="E", message="m", now_ms=now
            ),
            "fail": lambda r: store.fail(
                r, transition_key=key, status=Status.FAILED, error_code="E", message="m", now_ms=now
            ),
        }
        self.attempt(snap, changes[outcome], key=key)

    @rule(data=st.data())
    def timeout(self, data: st.DataObject) -> None:
        snap = data.draw(st.sampled_from(self.seen))
        self.now += data.draw(st.integers(0, 100))
        self.attempt(
            snap,
            lambda r: self.store.retry(
                r,
                transition_key=r.transition_key or "none",
                error_code="TRANSITION_TIMEOUT",
                message="late",
                due_at_ms=self.now + 10,
                now_ms=self.now,
                timed_out=True,
            ),
            key=snap.transition_key or "none",
        )

    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        snap = data.draw(st.sampled_from(self.seen))
        before = self.current()
        try:
            self.run(
                self.store.renew(
                    *snap.key,
                    transition_key=snap.transition_key or "none",
                    deadline_ms=self.now + 80,
                )
            )
        except StaleRecord:
            return
        after = self.current()
        assert after.version == before.version and after.status in (
            Status.RUNNING,
            Status.WAIT_RETRY,
        )

    @rule(data=st.data())
    def resume(self, data: st.DataObject) -> None:
        snap = data.draw(st.sampled_from(self.seen))
        self.attempt(
            snap,
            lambda r: self.store.resume(
                r,
                await_unit_id=r.await_unit_id or "none",
                step_index=r.step_index + 1,
                continuation=OUT,
                now_ms=self.now,
            ),
        )

    @rule(data=st.data(), allow_failed=st.booleans())
    def redrive(self, data: st.DataObject, allow_failed: bool) -> None:
        snap = data.draw(st.sampled_from(self.seen))
        self.attempt(
            snap,
            lambda r: self.store.redrive(
                r, now_ms=self.now, actor="ops", allow_failed=allow_failed
            ),
        )

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        snap = data.draw(st.sampled_from(self.seen))
        self.attempt(
            snap, lambda r: self.store.cancel(r, now_ms=self.now, actor="ops", reason="stop")
        )

    @invariant()
    def version_only_grows_and_terminal_is_final(self) -> None:
        record = self.current()
        if self.last is not None:
            assert record.version >= self.last.version
            if self.last.terminal and record.version != self.last.version:
                assert record.status is Status.QUEUED, "a terminal record changed but by re-drive"
        self.last = record

    @invariant()
    def deadlines_match_the_status(self) -> None:
        record = self.current()
        if record.terminal:
            assert record.due_at_ms is None and record.transition_key is None
        if record.status is Status.WAITING_EXTERNAL:  # due: the sweeper repairs a lost unit
            assert record.due_at_ms is not None and record.transition_key is None
        if record.status is Status.RUNNING:
            assert record.due_at_ms is not None and record.transition_key is not None

    @invariant()
    def a_search_by_its_status_finds_it_and_one_by_another_does_not(self) -> None:
        record = self.current()
        others = frozenset(Status) - {record.status}

        def found(statuses: frozenset[Status]) -> list[str]:
            page = self.run(self.store.search(ExecutionQuery("acme", statuses)))
            return [r.execution_id for r in page.records]

        assert found(frozenset({record.status})) == [record.execution_id]
        assert found(others) == []
        assert found(frozenset()) == [record.execution_id]


ExecutionLifecycle.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestExecutionLifecycle = ExecutionLifecycle.TestCase
