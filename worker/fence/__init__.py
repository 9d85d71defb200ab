"""The worker's fence: the rule (``port``) and its DynamoDB adapter."""

from worker.fence.dynamodb import DynamoTransitionFence
from worker.fence.port import IN_FLIGHT, TransitionFence, live

__all__ = ["IN_FLIGHT", "DynamoTransitionFence", "TransitionFence", "live"]
