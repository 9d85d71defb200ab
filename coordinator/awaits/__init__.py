"""Awaits: units, interactions, transports, completion and deadlines (REFERENCE section 3)."""

from coordinator.awaits.service import AwaitService, Completed
from coordinator.awaits.tables import AwaitTable, DynamoAwaitTable, InMemoryAwaitTable
from coordinator.awaits.transports import InteractionApi, SqsRequests, Transport, Transports

__all__ = [
    "AwaitService",
    "AwaitTable",
    "Completed",
    "DynamoAwaitTable",
    "InMemoryAwaitTable",
    "InteractionApi",
    "SqsRequests",
    "Transport",
    "Transports",
]
