"""Retiring a release version: its work queue is deleted once nothing can need it again.

A version's queue serves every pipeline released under that version, and an execution pinned
to it may come back long after it stopped (a retry, an await answered late, a re-drive of a
``DLQ`` or ``FAILED`` execution). So a version retires only when no pipeline has it active and
no execution pinned to it is anything but ``SUCCEEDED``. Finding those is a filtered walk of the
executions table: an operator's occasional action, never on a hot path. Activating the version
again creates its queue again.
"""

from __future__ import annotations

from coordinator.records import Status
from coordinator.registry import Registry
from coordinator.routing import WorkQueues
from coordinator.store import ExecutionStore
from tpf.errors import Conflict

PAGE = 500
SHOWN = 5
"""Executions named in a refusal; the operator can list the rest."""
MAY_COME_BACK = [s for s in Status if s is not Status.SUCCEEDED]


class ReleaseRetirement:
    def __init__(self, *, registry: Registry, store: ExecutionStore, work: WorkQueues) -> None:
        self.registry, self.store, self.work = registry, store, work

    async def retire(self, release_version: str) -> list[str]:
        """Delete the version's queue; the pipelines it served. ``Conflict`` while needed."""
        pipelines = await self.registry.pipelines_of(release_version)
        for pipeline_id in pipelines:
            active = await self.registry.active_release(pipeline_id)
            if active is not None and active.release_version == release_version:
                raise Conflict(
                    f"release {release_version} is the active release of {pipeline_id!r}: "
                    "activate another one first",
                    code="RELEASE_ACTIVE",
                )
        pinned = await self.pinned(release_version)
        if pinned:
            raise Conflict(
                f"executions pinned to release {release_version} may still run "
                f"(not SUCCEEDED): {', '.join(pinned[:SHOWN])}"
                + (" and more" if len(pinned) > SHOWN else ""),
                code="RELEASE_PINNED",
            )
        await self.work.retire(release_version)
        return pipelines

    async def pinned(self, release_version: str) -> list[str]:
        """Up to a few executions pinned to the version that may run again."""
        found: list[str] = []
        cursor: str | None = None
        while True:
            page = await self.store.page(statuses=MAY_COME_BACK, limit=PAGE, cursor=cursor)
            found += [r.execution_id for r in page.records if r.release_version == release_version]
            if len(found) > SHOWN or page.cursor is None:
                return found
            cursor = page.cursor
