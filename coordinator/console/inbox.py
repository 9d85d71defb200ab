"""The Inbox: a tenant's interactions waiting for a person, and the form that answers one.

The form is built from the await step's response schema (``coordinator.console.forms``); the
answer goes through the same completion as ``POST .../interactions/complete``, with the person
as the interaction's actor.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from coordinator.awaits.model import Interaction, InteractionStatus, parse_interaction_id
from coordinator.console.forms import ResponseForm, answer_of, response_form
from coordinator.console.pages import (
    CONSOLE,
    TenantSession,
    form_of,
    render,
    see_other,
    tenant_router,
)
from coordinator.wiring import Coordinator
from tpf.errors import InvalidInput, NotFound
from tpf.records import ExecutionRecord

INBOX_LIMIT = 100


def inbox_router(coordinator: Coordinator) -> APIRouter:
    router = tenant_router("/inbox")

    @router.get("")
    async def inbox(tenant_id: str, request: Request) -> Response:
        pipeline_id = request.query_params.get("pipelineId") or None
        step_id = request.query_params.get("stepId") or None
        waiting = await coordinator.awaits.pending(
            tenant_id, step_id=step_id[:200] if step_id else None, limit=INBOX_LIMIT
        )
        records = await _records(coordinator, tenant_id, {i.execution_id for i in waiting})
        rows = [
            (i, records[i.execution_id])
            for i in waiting
            if i.execution_id in records
            and (pipeline_id is None or records[i.execution_id].pipeline_id == pipeline_id)
        ]
        return render(
            request,
            "inbox.html",
            tenant=tenant_id,
            rows=rows,
            pipeline_id=pipeline_id or "",
            step_id=step_id or "",
        )

    @router.get("/{interaction_id}")
    async def answer_page(tenant_id: str, interaction_id: str, request: Request) -> Response:
        interaction, record, form = await _answerable(coordinator, tenant_id, interaction_id)
        return _answer_form(request, interaction, record, form)

    @router.post("/{interaction_id}")
    async def answer(
        tenant_id: str, interaction_id: str, request: Request, session: TenantSession
    ) -> Response:
        fields = await form_of(request, session)
        interaction, record, form = await _answerable(coordinator, tenant_id, interaction_id)
        try:
            response = answer_of(form, fields)
            await coordinator.awaits.complete(
                tenant_id,
                response=response,
                interaction_id=interaction.interaction_id,
                actor=session.actor,
            )
        except InvalidInput as exc:
            # Shown on the form itself, with what the person typed kept.
            where = f" (at {exc.pointer})" if exc.pointer else ""
            return _answer_form(
                request, interaction, record, form, f"{exc}{where}", fields, status=400
            )
        return see_other(f"{CONSOLE}/tenants/{tenant_id}/executions/{record.execution_id}")

    return router


async def _answerable(
    coordinator: Coordinator, tenant_id: str, interaction_id: str
) -> tuple[Interaction, ExecutionRecord, ResponseForm]:
    key = parse_interaction_id(interaction_id[:200])
    found = None
    if key is not None:
        found = await coordinator.awaits.table.get_interaction(tenant_id, *key)
    if found is None:
        raise NotFound(f"no interaction {interaction_id[:200]} for tenant {tenant_id}")
    record = await coordinator.service.status(tenant_id, found.execution_id)
    contract = await coordinator.registry.contract(record.pipeline_id, record.contract_version)
    awaits = contract.step(found.step_id).await_
    schema: dict[str, Any] = awaits.response.json_schema if awaits is not None else {}
    return found, record, response_form(schema, json.loads(found.request))


def _answer_form(
    request: Request,
    interaction: Interaction,
    record: ExecutionRecord,
    form: ResponseForm,
    error: str = "",
    typed: dict[str, str] | None = None,
    *,
    status: int = 200,
) -> Response:
    return render(
        request,
        "answer.html",
        status=status,
        tenant=interaction.tenant_id,
        interaction=interaction,
        record=record,
        form=form,
        error=error,
        typed=typed or {},
        request_json=json.dumps(json.loads(interaction.request), indent=2)[:4096],
        pending=interaction.status is InteractionStatus.PENDING,
    )


async def _records(
    coordinator: Coordinator, tenant_id: str, execution_ids: set[str]
) -> dict[str, ExecutionRecord]:
    found = {}
    for execution_id in execution_ids:
        record = await coordinator.store.get(tenant_id, execution_id)
        if record is not None:
            found[execution_id] = record
    return found
