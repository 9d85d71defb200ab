"""Queue depth, sampled at an interval into ``tpf_queue_depth`` for ``GET /q/metrics``.

One GetQueueAttributes per queue per interval, on one replica or on all of them: the gauge is
labelled by queue, not by replica, so every replica reports the same numbers and a dashboard
takes the maximum. A queue that cannot be read keeps its last sampled value and is tried again
at the next interval; one failing queue never stops the others or the loop.

Built from the coordinator's queues by their role names, and run beside its other loops::

    sampler = QueueDepthSampler(
        {"work": work, "results": results, "await-completions": await_completions},
        interval_s=30.0,
    )
    asyncio.create_task(sampler.run(stop), name="queue-depth")

A queue reports ``visible`` through ``Queue.backlog()``; one that also has ``depth()``
(returning a :class:`QueueDepth`, one request for all three numbers) reports ``in_flight`` and
``delayed`` too. A state a queue cannot report is left out rather than shown as zero.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from tpf import metrics
from tpf.loops import repeat
from tpf.queues import Queue, QueueDepth

log = logging.getLogger("tpf.coordinator")

__all__ = ["QueueDepth", "QueueDepthSampler"]


async def _read(queue: Queue) -> QueueDepth:
    """One reading of ``queue``: ``depth()`` where the queue has it, else ``backlog()``."""
    depth = getattr(queue, "depth", None)
    if depth is not None:
        found = await depth()
        return QueueDepth(visible=found.visible, in_flight=found.in_flight, delayed=found.delayed)
    return QueueDepth(visible=await queue.backlog())


class QueueDepthSampler:
    """Sets ``tpf_queue_depth{queue, state}`` for each named queue every ``interval_s``."""

    def __init__(self, queues: Mapping[str, Queue], *, interval_s: float = 60.0) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.queues = dict(queues)
        """Label value (a role name such as ``work``) to queue."""
        self.interval_s = interval_s

    async def sample_once(self) -> dict[str, QueueDepth]:
        """Read every queue at once and set the gauge; the depths read (failed ones left out)."""
        names = list(self.queues)
        found = await asyncio.gather(
            *(_read(self.queues[n]) for n in names), return_exceptions=True
        )
        read: dict[str, QueueDepth] = {}
        for name, depth in zip(names, found, strict=True):
            if isinstance(depth, BaseException):
                if not isinstance(depth, Exception):
                    raise depth  # cancellation and the like are not a failed read
                log.warning(
                    "sampling the depth of queue %s failed: %s",
                    name,
                    depth,
                    extra={"action": "queue-depth", "queue": name},
                )
                continue
            _set(name, depth)
            read[name] = depth
        return read

    async def run(self, stop: asyncio.Event) -> None:
        """Sample until ``stop`` is set; a failed round is logged and the next one comes."""
        await repeat(self.sample_once, stop, interval_s=self.interval_s, what="queue-depth")


def _set(name: str, depth: QueueDepth) -> None:
    states = {"visible": depth.visible, "in_flight": depth.in_flight, "delayed": depth.delayed}
    for state, value in states.items():
        if value is not None:
            metrics.QUEUE_DEPTH.labels(queue=name, state=state).set(value)
