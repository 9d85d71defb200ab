"""Routing: every command goes to the work queue of the release its execution is pinned to.

Each release (a pipeline at a version) has its own queue (``infra.resources.work_queue``),
declared as a release-scoped resource, created when the release is activated and retired once
nothing is pinned to it. Workers poll only their release's queue, so a v2 worker never sees a
v1 command; a command that reaches a worker of another release anyway (a misconfigured
consumer) is refused unrun and re-routed by the results consumer.
"""

from coordinator.routing.memory import InMemoryWorkQueues
from coordinator.routing.port import WorkQueues
from coordinator.routing.rest import RestDispatch
from coordinator.routing.sqs import SqsWorkQueues

__all__ = ["InMemoryWorkQueues", "RestDispatch", "SqsWorkQueues", "WorkQueues"]
