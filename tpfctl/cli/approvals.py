"""``tpf approvals``: the restaurant's side of the human inbox (REFERENCE section 5).

``list`` shows the orders waiting for a decision; ``approve`` and ``decline`` complete one
interaction through the control-plane API with a decision in the restaurant pipeline's shape.

The coordinator recognises a repeated completion by its response document, and a decided
interaction leaves the inbox, so a retry could neither find the orderId again nor rebuild the
same ``decidedAt``. Both are therefore journaled in the state directory before the decision is
sent: running the same command again sends the same document and is reported as a duplicate.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from examples.restaurant_approval import AWAIT_STEP, PIPELINE_ID
from tpf.codec import encode_envelope
from tpf.errors import InvalidInput, NotFound, TpfError
from tpf.settings import Settings
from tpfctl.cli.common import Api, out, print_json
from tpfctl.cli.operations import default_actor
from tpfctl.cli.tables import Column, Wide, build_table

app = typer.Typer(help="Decide restaurant orders waiting in the inbox.", no_args_is_help=True)

Tenant = Annotated[str, typer.Option(help="Tenant id.")]
Json = Annotated[bool, typer.Option("--json", help="Print the API's JSON for scripts.")]
Actor = Annotated[str | None, typer.Option(help="Who decides; defaults to user@host.")]
InteractionId = Annotated[str, typer.Argument(help="Interaction id from `tpf approvals list`.")]

ALL_STEPS = "all"
DECISION_TYPE = f"{PIPELINE_ID}.RestaurantDecision"
# Past a deadline no new decision lands; a day more keeps duplicates recognisable meanwhile.
JOURNAL_GRACE = timedelta(days=1)


@app.command("list")
def list_pending(
    step: Annotated[str, typer.Option(help=f"Await step id, or '{ALL_STEPS}'.")] = AWAIT_STEP,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    tenant: Tenant = "default",
    wide: Wide = False,
    as_json: Json = False,
) -> None:
    """List the interactions waiting for a decision, oldest first (--wide: who ordered what)."""
    params: dict[str, Any] = {"limit": limit}
    if step != ALL_STEPS:
        params["stepId"] = step
    found = Api(Settings()).call("GET", f"{_inbox(tenant)}/pending", params=params)
    if as_json:
        print_json(found)
        return
    out.print(pending_table(found, now_ms=time.time() * 1000, wide=wide))


PENDING = [
    Column("interaction", whole=True),  # whole: `approve` and `decline` take it back
    Column("order", identifier=True),
    Column("total", whole=True),
    Column("deadline", whole=True),
    Column("restaurant", wide=True),
    Column("customer", wide=True),
    Column("items", wide=True),
]


def pending_table(found: list[dict[str, Any]], *, now_ms: float, wide: bool) -> Table:
    rows = []
    for i in found:
        order = i["requestPayload"] if isinstance(i["requestPayload"], dict) else {}
        total = order.get("totalAmount")
        rows.append(
            [
                i["interactionId"],
                order.get("orderId"),
                None if total is None else f"{total} {order.get('currency', '')}".strip(),
                relative(i["deadlineEpochMs"] - now_ms),
                order.get("restaurantName"),
                order.get("customerName"),
                order.get("items"),
            ]
        )
    return build_table(f"{len(found)} pending", PENDING, rows, wide=wide)


@app.command()
def approve(
    interaction_id: InteractionId,
    note: Annotated[str | None, typer.Option(help="Kept with the decision.")] = None,
    tenant: Tenant = "default",
    actor: Actor = None,
    as_json: Json = False,
) -> None:
    """Accept the order an interaction waits on."""
    decide(interaction_id, "accepted", {"note": note}, tenant, actor, as_json)


@app.command()
def decline(
    interaction_id: InteractionId,
    reason: Annotated[str, typer.Option(help="Why; sent as declineReason.")],
    tenant: Tenant = "default",
    actor: Actor = None,
    as_json: Json = False,
) -> None:
    """Decline the order an interaction waits on."""
    decide(interaction_id, "declined", {"declineReason": reason}, tenant, actor, as_json)


def decide(
    interaction_id: str,
    kind: str,
    details: dict[str, str | None],
    tenant: str,
    actor: str | None,
    as_json: bool,
) -> None:
    settings = Settings()
    api = Api(settings)
    journal = Journal(settings.state_dir / "decisions", f"{api.base_url}\x1f{tenant}")
    entry = journal.get(interaction_id) or _from_inbox(api, tenant, interaction_id)
    decided_at = entry.setdefault(kind, utc_now())
    # Before sending: if the decision lands but the answer is lost, the retry resends it.
    journal.put(interaction_id, entry)
    decision = {"orderId": entry["orderId"], "decidedAt": decided_at}
    decision.update({k: v for k, v in details.items() if v is not None})
    body = {
        "interactionId": interaction_id,
        "idempotencyKey": f"tpf-approvals/{interaction_id}/{kind}",
        "responsePayload": encode_envelope(DECISION_TYPE, {kind: decision}),
        "actor": actor or default_actor(),
    }
    verb = "approve" if kind == "accepted" else "decline"
    try:
        done = api.call("POST", f"{_inbox(tenant)}/complete", json=body)
    except TpfError as exc:
        raise TpfError(f"cannot {verb} {interaction_id}: {exc}") from exc
    if as_json:
        print_json(done)
        return
    again = " (duplicate: this decision was already recorded)" if done["duplicate"] else ""
    print(
        f"{verb}d order {entry['orderId']} ({interaction_id}), "
        f"execution {done['executionId']}{again}"
    )


def _from_inbox(api: Api, tenant: str, interaction_id: str) -> dict[str, Any]:
    found = api.call("GET", f"{_inbox(tenant)}/pending", params={"limit": 1000})
    match = next((i for i in found if i["interactionId"] == interaction_id), None)
    if match is None:
        raise NotFound(f"no pending interaction {interaction_id} in tenant {tenant}")
    request = match["requestPayload"]
    if not isinstance(request, dict) or not isinstance(request.get("orderId"), str):
        raise InvalidInput(f"interaction {interaction_id} does not wait on an order (no orderId)")
    return {"orderId": request["orderId"], "deadlineEpochMs": match["deadlineEpochMs"]}


class Journal:
    """Decisions sent from this machine: one small JSON file per interaction."""

    def __init__(self, directory: Path, scope: str) -> None:
        self.directory = directory
        self.scope = scope

    def _path(self, interaction_id: str) -> Path:
        name = hashlib.sha256(f"{self.scope}\x1f{interaction_id}".encode()).hexdigest()[:32]
        return self.directory / f"{name}.json"

    def get(self, interaction_id: str) -> dict[str, Any] | None:
        try:
            entry: dict[str, Any] = json.loads(self._path(interaction_id).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return entry

    def put(self, interaction_id: str, entry: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._prune()
        path = self._path(interaction_id)
        staged = path.with_suffix(f".{os.getpid()}.tmp")
        staged.write_text(json.dumps(entry))
        os.replace(staged, path)  # a reader never sees half an entry

    def _prune(self) -> None:
        cutoff_ms = (time.time() - JOURNAL_GRACE.total_seconds()) * 1000
        for path in self.directory.glob("*.json"):
            try:
                if json.loads(path.read_text()).get("deadlineEpochMs", 0) < cutoff_ms:
                    path.unlink()
            except (OSError, ValueError):
                continue


def _inbox(tenant: str) -> str:
    return f"/tpf/control-plane/tenants/{tenant}/interactions"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def relative(ms: float) -> str:
    """A deadline as people read it: 'in 45s', 'in 29m', 'in 2h05m'."""
    seconds = int(ms // 1000)
    if seconds < 0:
        return "overdue"
    if seconds < 60:
        return f"in {seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"in {minutes}m"
    return f"in {minutes // 60}h{minutes % 60:02d}m"
