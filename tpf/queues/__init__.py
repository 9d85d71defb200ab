"""Queues: the port, an in-memory fake and the SQS adapter, with the batcher they share."""

from tpf.queues.batching import Batcher
from tpf.queues.memory import InMemoryQueue
from tpf.queues.port import BATCH, Outgoing, Queue, QueueDepth, QueueError, Received
from tpf.queues.sqs import SqsQueue

__all__ = [
    "BATCH",
    "Batcher",
    "InMemoryQueue",
    "Outgoing",
    "Queue",
    "QueueDepth",
    "QueueError",
    "Received",
    "SqsQueue",
]
