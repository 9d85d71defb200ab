"""The crash harness: a real fleet under mixed load, faults injected at random, then a verdict.

Timeline of one run (``period`` scales with the number of executions)::

    0 ─────────── 0.7·period ──────── period ────────────── quiescence ── verdict
    submissions, paced   │               │ faults stop; frozen  │ every execution
    kills + restarts, freezes, dupes ────┘ workers thawed       │ terminal (or timeout)
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from infra.resources import work_queue
from tpf.loading import load_pipeline
from tpf.settings import PROFILES
from tpf.substrate import Endpoints, sync_client
from tpfctl.chaos.faults import SERVICES, FaultProxy, FaultRates
from tpfctl.chaos.load import Planned, plan
from tpfctl.chaos.monkey import Duplicator, Monkey, Tally
from tpfctl.chaos.options import Options
from tpfctl.chaos.outages import Outages, disk_dynamodb, requested_faults, restarted_loops
from tpfctl.chaos.pipelines import CHAOS_DIR, PIPELINES
from tpfctl.chaos.verdict import STATUSES_TERMINAL, Evidence, Verdict, judge, read_jsonl
from tpfctl.stack import OwnedStack, StackSpec, owned_stack


def run(options: Options) -> dict[str, Any]:
    seed = options.seed if options.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    timings = PROFILES["test"]
    run_id = uuid.uuid4().hex[:8]
    workdir = options.workdir or Path.cwd() / ".chaos" / run_id
    workdir.mkdir(parents=True, exist_ok=True)
    planned = plan(options.executions, timings=timings, rng=rng, run_id=run_id)
    tally = Tally()
    deadline_s = (timings.queue_allowance + timings.transition_timeout).total_seconds()

    spec = StackSpec(
        substrate=options.substrate,
        stack=f"chaos-{run_id}",
        profile="test",
        coordinators=options.coordinators,
        workers=options.workers,
        pipelines=PIPELINES,
        extra_env={CHAOS_DIR: str(workdir)},
    )
    started = time.monotonic()
    with contextlib.ExitStack() as substrate:
        disk = disk_dynamodb(options, workdir, substrate)
        if disk is not None:
            spec = replace(spec, endpoints={"dynamodb": disk.endpoint})
        proxy = FaultProxy({}, options.faults, rng=random.Random(rng.random()))
        route = None
        if options.proxied:
            substrate.enter_context(proxy)

            def route(endpoints: Endpoints) -> dict[str, str]:
                proxy.upstreams.update({s: endpoints.for_service(s) or "" for s in SERVICES})
                return {f"AWS_ENDPOINT_URL_{s.upper()}": url for s, url in proxy.endpoints.items()}

        stack = substrate.enter_context(owned_stack(spec, workdir=workdir / "fleet", route=route))
        outages = Outages(proxy, disk, options, progress)
        monkey = Monkey(
            stack.fleet,
            rng=rng,
            tally=tally,
            freeze_s=(deadline_s + 1, deadline_s + 3),
            invocations=workdir / "invocations",
            long_s=deadline_s + 1,
        )
        stop = threading.Event()
        submitter = Submitter(stack, planned, pace_s=0.7 * options.period_s / len(planned))
        threads = [threading.Thread(target=submitter.run, name="submit", daemon=True)]
        threads.append(
            threading.Thread(
                target=inject,
                args=(monkey, outages, options, rng, stop),
                name="faults",
                daemon=True,
            )
        )
        if options.duplicate_rate > 0:
            sqs = sync_client(stack.settings, "sqs", endpoints=stack.endpoints)
            ids = [load_pipeline(p).id for p in PIPELINES]
            work_queues = [work_queue(p, spec.release) for p in ids]
            urls = [
                sqs.get_queue_url(QueueName=stack.settings.resource(q))["QueueUrl"]
                for q in (*work_queues, "results")
            ]
            duplicator = Duplicator(sqs, urls, rate=options.duplicate_rate, rng=rng, tally=tally)
            threads.append(threading.Thread(target=duplicator.run, args=(stop,), daemon=True))
        for thread in threads:
            thread.start()
        threads[1].join()  # the fault schedule ran out
        stop.set()
        monkey.release()
        proxy.rates = FaultRates()  # quiescence is judged on a well-behaved substrate
        threads[0].join()
        progress(f"faults over: {tally}; waiting for quiescence")
        statuses = submitter.wait_terminal(started + options.timeout_s)
        records = asyncio.run(read_records(stack, set(submitter.ids.values())))
        crashes = list(stack.fleet.crashes)
        loop_restarts = sum(restarted_loops(url) for url in stack.api_urls)
        injected = proxy.tally.snapshot()
        dynamodb_restarts = disk.restarts if disk is not None else 0

    verdict = judge(
        Evidence(
            planned={submitter.ids[p.key]: p for p in planned if p.key in submitter.ids},
            statuses=statuses,
            records=records,
            invocations=read_jsonl((workdir / "invocations").glob("*.log")),
            effects=read_jsonl((workdir / "effects").glob("*")),
            coordinator_log_lines=_coordinator_logs(workdir / "fleet"),
        ),
        kills_in_flight=tally.kills_in_flight,
        freezes_in_flight=tally.freezes_in_flight,
    )
    verdict.require(
        not crashes,
        "members crashed without being killed: " + "; ".join(c.describe() for c in crashes),
    )
    verdict.require(
        len(submitter.ids) == len(planned),
        f"only {len(submitter.ids)} of {len(planned)} submissions were accepted",
    )
    verdict.require(loop_restarts == 0, f"{loop_restarts} coordinator loops were restarted")
    counted = {
        **injected,
        "error": injected.get("error", 0) + injected.get("error_after_change", 0),
        "dynamodb_restart": dynamodb_restarts,
    }
    for kind, requested in requested_faults(options).items():
        verdict.require(
            not requested or counted.get(kind, 0) > 0,
            f"{kind} faults were asked for and none was injected",
        )
    report = summary(verdict, tally, options, seed, time.monotonic() - started, workdir)
    report["unexpected_restarts"] = len(crashes)
    report["loop_restarts"] = loop_restarts
    report["substrate_faults"] = {**injected, "dynamodb_restart": dynamodb_restarts}
    return report


def inject(
    monkey: Monkey,
    outages: Outages,
    options: Options,
    rng: random.Random,
    stop: threading.Event,
) -> None:
    """Kills, freezes, blackouts and database restarts at random moments of the fault period."""
    begin = time.monotonic()
    period = options.period_s
    schedule = (
        [monkey.kill] * options.kills
        + [monkey.freeze] * options.freezes
        + [outages.blackout] * options.blackouts
        + [outages.restart_dynamodb] * options.dynamodb_restarts
    )
    events = sorted(
        ((rng.uniform(0, period), fault) for fault in schedule), key=lambda event: event[0]
    )
    for at, fault in events:
        if stop.wait(max(0.0, begin + at - time.monotonic())):
            return
        # Every member may be dead or frozen at this instant: try again shortly.
        while not fault() and not stop.wait(0.25):
            pass
    stop.wait(max(0.0, begin + options.period_s - time.monotonic()))


class Submitter:
    """Submits the planned executions through whichever coordinator answers."""

    def __init__(self, stack: OwnedStack, planned: list[Planned], *, pace_s: float) -> None:
        self.planned, self.pace_s = planned, pace_s
        self.clients = [
            httpx.Client(
                base_url=f"{url}/tpf/control-plane/tenants/chaos",
                headers={"Authorization": f"Bearer {stack.control_plane_token}"},
                timeout=5,
            )
            for url in stack.api_urls
        ]
        self.ids: dict[str, str] = {}
        self.retries = 0

    def run(self) -> None:
        for i, planned in enumerate(self.planned):
            if i and i % 50 == 0:
                progress(f"submitted {i} of {len(self.planned)}")
            self.ids[planned.key] = self._call(i, "POST", "/executions", planned.body())[
                "executionId"
            ]
            time.sleep(self.pace_s)

    def wait_terminal(self, deadline: float) -> dict[str, dict[str, Any]]:
        statuses: dict[str, dict[str, Any]] = {}
        while True:
            for i, execution_id in enumerate(self.ids.values()):
                if statuses.get(execution_id, {}).get("status") not in STATUSES_TERMINAL:
                    statuses[execution_id] = self._call(i, "GET", f"/executions/{execution_id}")
            pending = [s for s in statuses.values() if s["status"] not in STATUSES_TERMINAL]
            if not pending or time.monotonic() > deadline:
                return statuses
            progress(f"waiting for {len(pending)} executions to end")
            time.sleep(1.0)

    def _call(self, i: int, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """Try coordinators in turn; a killed one is back within seconds. Submit is idempotent."""
        give_up = time.monotonic() + 60
        attempt = 0
        while True:
            client = self.clients[(i + attempt) % len(self.clients)]
            try:
                response = client.request(method, path, json=body)
                if response.status_code < 500:
                    response.raise_for_status()
                    result: dict[str, Any] = response.json()
                    return result
            except httpx.TransportError:
                pass
            attempt += 1
            self.retries += 1
            if time.monotonic() > give_up:
                raise RuntimeError(f"no coordinator answered {method} {path} for 60 s")
            time.sleep(min(0.05 * attempt, 1.0))


async def read_records(stack: OwnedStack, ids: set[str]) -> list[dict[str, Any]]:
    from coordinator.store import ExecutionStore
    from coordinator.store.dynamodb import DynamoExecutionTable
    from tpf.substrate import open_clients

    async with open_clients(stack.settings, endpoints=stack.endpoints) as aws:
        table = DynamoExecutionTable(
            aws.dynamodb, stack.settings.resource("executions"), shards=stack.settings.due_shards
        )
        store, cursor = ExecutionStore(table), None
        found: list[dict[str, Any]] = []
        while True:
            page = await store.page(limit=200, cursor=cursor)
            found.extend(
                {
                    "executionId": r.execution_id,
                    "status": r.status.value,
                    "dueAtMs": r.due_at_ms,
                    "transitionKey": r.transition_key,
                }
                for r in page.records
                if r.execution_id in ids
            )
            cursor = page.cursor
            if cursor is None:
                return found


def _coordinator_logs(folder: Path) -> list[str]:
    return [
        line
        for path in sorted(folder.glob("coordinator*.log"))
        for line in path.read_text(errors="replace").splitlines()
    ]


def summary(
    verdict: Verdict, tally: Tally, options: Options, seed: int, wall_s: float, workdir: Path
) -> dict[str, Any]:
    return {
        **verdict.figures,
        "kills": tally.kills,
        "freezes": tally.freezes,
        "kills_in_flight": tally.kills_in_flight,
        "freezes_in_flight": tally.freezes_in_flight,
        "duplicates_injected": tally.duplicates,
        "wall_seconds": round(wall_s, 1),
        "substrate": options.substrate,
        "seed": seed,
        "workdir": str(workdir),
        "violations": verdict.violations,
    }


def progress(message: str) -> None:
    print(f"chaos: {message}", file=sys.stderr, flush=True)
