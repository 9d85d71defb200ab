"""Retiring a release: its work queue is deleted once nothing can need it again.

An execution pinned to a release may come back long after it stopped (a retry, an await
answered late, a re-drive of a ``DLQ`` or ``FAILED`` execution). So a release retires only when
it is not its pipeline's active release and no execution pinned to it is anything but
``SUCCEEDED``. Finding those is a filtered walk of the pipeline's executions: an operator's
occasional action, never on a hot path. Should anything still need the queue later, the
coordinator creates it again when it dispatches (and activation does too).
"""

from __future__ import annotations

from coordinator.routing import WorkQueues
from coordinator.store import ExecutionStore
from tpf.errors import Conflict
from tpf.records import Status
from tpf.registry import Registry

PAGE = 500
SHOWN = 5
"""Executions named in a refusal; the operator can list the rest."""
MAY_COME_BACK = [s for s in Status if s is not Status.SUCCEEDED]


class ReleaseRetirement:
    def __init__(self, *, registry: Registry, store: ExecutionStore, work: WorkQueues) -> None:
        self.registry, self.store, self.work = registry, store, work

    async def retire(self, pipeline_id: str, release_version: str) -> None:
        """Delete the release's queue; ``NotFound`` or ``Conflict`` while it may be needed."""
        await self.registry.release(pipeline_id, release_version)
        if release_version in await self.registry.active_anywhere(pipeline_id):
            raise Conflict(
                f"release {release_version} is an active release of {pipeline_id!r} (by "
                "default or for a tenant): activate another one first",
                code="RELEASE_ACTIVE",
            )
        pinned = await self.pinned(pipeline_id, release_version)
        if pinned:
            raise Conflict(
                f"executions pinned to release {release_version} may still run "
                f"(not SUCCEEDED): {', '.join(pinned[:SHOWN])}"
                + (" and more" if len(pinned) > SHOWN else ""),
                code="RELEASE_PINNED",
            )
        await self.work.retire(pipeline_id, release_version)

    async def pinned(self, pipeline_id: str, release_version: str) -> list[str]:
        """Up to a few executions pinned to the release that may run again."""
        found: list[str] = []
        cursor: str | None = None
        while True:
            page = await self.store.page(
                statuses=MAY_COME_BACK, pipeline_id=pipeline_id, limit=PAGE, cursor=cursor
            )
            found += [r.execution_id for r in page.records if r.release_version == release_version]
            if len(found) > SHOWN or page.cursor is None:
                return found
            cursor = page.cursor
