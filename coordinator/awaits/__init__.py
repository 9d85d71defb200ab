"""Awaits: units, interactions, transports, completion and deadlines (REFERENCE section 3)."""

from coordinator.awaits.completing import Completed, CompletionRequest
from coordinator.awaits.dynamodb import DynamoAwaitTable
from coordinator.awaits.memory import InMemoryAwaitTable
from coordinator.awaits.port import AwaitTable
from coordinator.awaits.service import Admission, AwaitService
from coordinator.awaits.transports import InteractionApi, SqsRequests, Transport, Transports

__all__ = [
    "Admission",
    "AwaitService",
    "AwaitTable",
    "Completed",
    "CompletionRequest",
    "DynamoAwaitTable",
    "InMemoryAwaitTable",
    "InteractionApi",
    "SqsRequests",
    "Transport",
    "Transports",
]
