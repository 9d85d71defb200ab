"""`tpf infra up` upgrades a stack an earlier main provisioned, and what it held finishes.

Each snapshot in ``tests/upgrades/stacks`` is a stack as a released main left it, holding an
order parked at the restaurant approval (``python -m tests.upgrades.snapshot`` makes one).
The three latest mains are kept: each new one replaces the oldest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from coordinator.upgrades import UPGRADES
from examples.restaurant_approval import PIPELINE_ID
from infra.provision import provision
from infra.resources import WORK_QUEUE_PREFIX
from tests.e2e.test_cli import clean_env, tpf
from tests.e2e.test_csv_payments import expected_output
from tests.e2e.test_fleet import finished
from tests.substrates import unique_stack
from tests.upgrades.snapshot import SIGNING_SECRET, TOKEN, restore
from tests.waiting import wait_until
from tpf.records import ACTIVE, DUE_AT, SEARCH_LANE, WAKE_AT, Status
from tpf.settings import Settings
from tpf.substrate import resolve_endpoints
from tpfctl.stack import StackSpec, owned_stack

PIPELINES = (
    "examples.restaurant_approval:restaurant_approval",
    "examples.csv_payments.pipeline:csv_payments",
)
SNAPSHOTS = sorted((Path(__file__).parents[1] / "upgrades" / "stacks").glob("*.json"))

pytestmark = pytest.mark.timeout(240)


def aws(endpoint: str) -> dict[str, Any]:
    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    return {s: session.client(s, endpoint_url=endpoint) for s in ("dynamodb", "sqs", "s3")}


def shape(settings: Settings, env: dict[str, str]) -> Any:
    """What ``tpf infra describe`` says of a stack, without names, counts and messages."""
    described = tpf("infra", "describe", "--json", env={**env, "TPF_STACK": settings.stack})
    assert described.returncode == 0, described.stderr
    text = described.stdout.replace(settings.stack, "{stack}")
    live = json.loads(text)

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: strip(v)
                for k, v in value.items()
                # Release queues come with releases, which a fresh stack has none of.
                if k not in ("item_count", "messages", "endpoints", "stack")
                and not k.startswith(WORK_QUEUE_PREFIX)
            }
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(live)


def fresh_stack(settings: Settings) -> Settings:
    """A stack of the same substrate that this main provisions from nothing."""
    fresh = settings.model_copy(update={"stack": unique_stack()})
    provision(fresh, endpoints=resolve_endpoints(fresh))
    return fresh


def release_code(snapshot: Path) -> dict[str, str]:
    """Run the workers on the pipeline code of the snapshot's release, as an operator keeps the
    workers of a release until its executions are done: the contract they registered must
    match. The code is kept beside the snapshot; only ``examples`` resolves there."""
    release = snapshot.parents[1] / "releases" / f"r{snapshot.stem}"
    assert (release / "examples").is_dir(), f"no release code for {snapshot.name} in {release}"
    return {"PYTHONSAFEPATH": "1", "PYTHONPATH": str(release)}


def parked_without_due(snapshot: dict[str, Any]) -> int:
    [executions] = [t for n, t in snapshot["tables"].items() if n.endswith("-executions")]
    waiting = [i for i in executions["items"] if i["st"]["S"] == "WAITING_EXTERNAL"]
    return sum(1 for i in waiting if "dt" not in i)


def executions_without_a_search_lane(snapshot: dict[str, Any]) -> int:
    [executions] = [t for n, t in snapshot["tables"].items() if n.endswith("-executions")]
    return sum(1 for i in executions["items"] if SEARCH_LANE not in i)


def due_without_a_wake_time(snapshot: dict[str, Any]) -> int:
    [executions] = [t for n, t in snapshot["tables"].items() if n.endswith("-executions")]
    active = [i for i in executions["items"] if Status(i["st"]["S"]) in ACTIVE]
    return sum(1 for i in active if DUE_AT in i and WAKE_AT not in i)


def complete_history(api: httpx.Client, execution_id: str, version: int) -> bool:
    history = api.get(f"/executions/{execution_id}/history").json()
    return [c["version"] for c in history] == list(range(version + 1))


def searched(api: httpx.Client, **filters: str) -> list[str]:
    """The ids the search route lists for ``filters``, every page."""
    found, cursor = [], None
    while True:
        params = {**filters, **({"cursor": cursor} if cursor else {})}
        response = api.get("/executions", params=params)
        assert response.status_code == 200, response.text
        found += [e["executionId"] for e in response.json()["executions"]]
        cursor = response.json()["nextCursor"]
        if cursor is None:
            return found


def applied_before(snapshot: dict[str, Any]) -> set[str]:
    """The upgrades the snapshot's stack already had (its registry's ledger)."""
    [registry] = [t for n, t in snapshot["tables"].items() if n.endswith("-registry")]
    keys = [(i["pk"]["S"], i["sk"]["S"]) for i in registry["items"]]
    return {sk.removeprefix("upgrade#") for pk, sk in keys if pk == "stack"}


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=[p.stem for p in SNAPSHOTS])
def test_infra_up_upgrades_an_earlier_stack_and_its_parked_approval_finishes(
    snapshot: Path, markers: Path, tmp_path: Path
) -> None:
    name, seen = unique_stack(), {}

    def upgrade(settings: Settings, env: dict[str, str]) -> None:
        clients = aws(env["AWS_ENDPOINT_URL"])
        seen["snapshot"] = restore(
            snapshot.read_text(), clients, stack=name, endpoint=env["AWS_ENDPOINT_URL"]
        )
        upgraded = tpf("infra", "up", "--json", env=clean_env(tmp_path, **env), timeout=120)
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        seen["report"] = json.loads(upgraded.stdout)
        again = tpf("infra", "up", env=clean_env(tmp_path, **env), timeout=120)
        assert again.returncode == 0 and "nothing to change" in again.stdout, again.stdout
        # Upgraded, it is the stack this main provisions from nothing.
        cli_env = clean_env(tmp_path, **env)
        assert shape(settings, cli_env) == shape(fresh_stack(settings), cli_env)
        seen["record"] = clients["dynamodb"].get_item(
            TableName=settings.resource("executions"),
            Key={"pk": {"S": f"acme#{seen['snapshot']['parked']['executionId']}"}},
            ConsistentRead=True,
        )["Item"]

    spec = StackSpec(
        substrate="embedded",
        stack=name,
        profile="test",
        workers=1,
        pipelines=PIPELINES,
        provider_mock=("--rate", "1000"),  # answers the CSV's requests, sent again after a stall
        worker_env=release_code(snapshot),
        register=False,  # the snapshot holds the release its parked execution is pinned to
        control_plane_token=TOKEN,
        admin_token=TOKEN,
        extra_env={"TPF_SIGNING_SECRET": SIGNING_SECRET, "TPF_TEST_MARKERS": str(markers)},
    )
    with owned_stack(spec, workdir=tmp_path / "fleet", prepare=upgrade) as stack:
        ran = {u["id"]: u for u in seen["report"]["upgrades"]}
        assert set(ran) == {u.id for u in UPGRADES} - applied_before(seen["snapshot"])
        assert all(u["ran"] for u in ran.values())
        if "2026-12-parked-due-time" in ran:
            assert ran["2026-12-parked-due-time"]["changed"] == parked_without_due(seen["snapshot"])
            assert seen["record"]["st"]["S"] == "WAITING_EXTERNAL" and "dt" in seen["record"]
        if "2026-12-search-lanes" in ran:
            # The parked records the due-time upgrade rewrote got their lane with it.
            rewritten = ran.get("2026-12-parked-due-time", {}).get("changed", 0)
            lanes = ran["2026-12-search-lanes"]["changed"]
            assert lanes == executions_without_a_search_lane(seen["snapshot"]) - rewritten
        if "2026-12-due-wake-times" in ran:
            # The due index is keyed by the wake time now: the parked approval is in it again.
            woken = ran["2026-12-due-wake-times"]["changed"]
            assert woken == due_without_a_wake_time(seen["snapshot"])
            assert seen["record"][WAKE_AT] == seen["record"][DUE_AT]

        parked = seen["snapshot"]["parked"]
        with httpx.Client(
            base_url=f"{stack.api_url}/tpf/control-plane/tenants/acme",
            headers={"Authorization": f"Bearer {stack.control_plane_token}"},
            timeout=10,
        ) as api:
            # Created before the upgrade, found by the search index it added.
            waiting = searched(api, status="WAITING_EXTERNAL", pipelineId=PIPELINE_ID)
            assert parked["executionId"] in waiting
            # Opened before inbox correlation ids became interaction ids: it keeps its own.
            [listed] = [
                i
                for i in api.get("/interactions/pending", params={"limit": 1000}).json()
                if i["interactionId"] == parked["interactionId"]
            ]
            assert listed["correlationId"] not in ("", parked["interactionId"])
        env = clean_env(tmp_path, **stack.env, TPF_API_URL=stack.api_url)
        approved = tpf("approvals", "approve", parked["interactionId"], "--tenant", "acme", env=env)
        assert approved.returncode == 0, approved.stdout + approved.stderr
        with httpx.Client(
            base_url=f"{stack.api_url}/tpf/control-plane/tenants/acme",
            headers={"Authorization": f"Bearer {stack.control_plane_token}"},
            timeout=10,
        ) as api:
            status = finished(api, parked["executionId"], timeout=60)
            assert status["status"] == "SUCCEEDED", status
            result = api.get(f"/executions/{parked['executionId']}/result").json()
            decided = json.loads(result["resultPayload"]["payload"])
            assert decided["outcome"] == "APPROVED"
            assert status["pipelineId"] == PIPELINE_ID
            assert parked["executionId"] in searched(api, status="SUCCEEDED")
            # Its history reads whole: entries of an earlier main, one per item, then this
            # main's, a dispatch sharing its item with the commit it led to.
            wait_until(lambda: complete_history(api, parked["executionId"], status["version"]))
        if "csv" in seen["snapshot"]:  # a file waiting for its provider
            csv_execution = seen["snapshot"]["csv"]["executionId"]
            tenant = f"{stack.api_url}/tpf/control-plane/tenants/{stack.settings.ingest_tenant}"
            with httpx.Client(base_url=tenant, headers=api.headers, timeout=10) as files_api:
                paid = finished(files_api, csv_execution, timeout=60)
                assert paid["status"] == "SUCCEEDED", paid
                assert csv_execution in searched(files_api)
                report = json.loads(
                    files_api.get(f"/executions/{csv_execution}/result").json()["resultPayload"][
                        "payload"
                    ]
                )
            written = aws(stack.env["AWS_ENDPOINT_URL"])["s3"].get_object(
                Bucket=report["outputBucket"], Key=report["outputKey"]
            )
            assert written["Body"].read() == expected_output(
                seen["snapshot"]["csv"]["file"].encode()
            )
