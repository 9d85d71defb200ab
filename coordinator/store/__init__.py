"""Execution store: domain operations over a small table port, with DynamoDB and memory adapters."""

from coordinator.store.executions import ExecutionStore, Submitted
from coordinator.store.port import DueEntry, ExecutionTable, Guard, Page

__all__ = ["DueEntry", "ExecutionStore", "ExecutionTable", "Guard", "Page", "Submitted"]
