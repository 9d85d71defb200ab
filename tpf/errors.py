"""The project's exception tree. Everything the framework raises derives from ``TpfError``.

::

    TpfError
    ├── ConfigurationError          bad settings, no endpoint to talk to
    ├── ContractError               a pipeline or contract that cannot be used
    ├── InvalidInput                a payload that fails its schema (carries a JSON pointer)
    ├── Conflict                    a request the current state does not allow (HTTP 409)
    ├── StoreError                  a conditional write that did not apply
    │   ├── AlreadyExists           record present (carries it)
    │   ├── IdempotencyKeyReused    same key, other input (carries the existing record)
    │   ├── StaleRecord             version, transition key or status moved on (carries it)
    │   └── NotFound
    └── StepFailure                 raised by step code; retryability is a property
        ├── Retryable               retry_after: optional hint for the backoff
        └── NonRetryable

Retry code asks ``error.retryable``; it never keeps a list of exception types.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any


class TpfError(Exception):
    """Root of every error the framework raises."""


class ConfigurationError(TpfError):
    """The process cannot run as configured; the message says what to change."""


class ContractError(TpfError):
    """A pipeline declaration or contract document is not usable."""


class InvalidInput(TpfError):
    """A payload does not match the schema it is checked against."""

    def __init__(self, message: str, *, pointer: str = "") -> None:
        super().__init__(message)
        self.pointer = pointer


class Conflict(TpfError):
    """The request is valid but the current state refuses it; ``code`` names why."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class StoreError(TpfError):
    """A store operation whose condition did not hold."""

    def __init__(self, message: str, *, current: Any = None) -> None:
        super().__init__(message)
        self.current = current
        """The record as it is now (from ``ReturnValuesOnConditionCheckFailure=ALL_OLD``)."""


class AlreadyExists(StoreError):
    pass


class IdempotencyKeyReused(StoreError):
    pass


class StaleRecord(StoreError):
    """The fencing token, transition key or status no longer matches."""


class NotFound(StoreError):
    pass


class StepFailure(TpfError):
    """A step's way to say how it failed. Any other exception counts as unexpected."""

    retryable: bool = True
    error_code: str = "STEP_FAILED"

    def __init__(
        self,
        message: str,
        *,
        error_code: str | None = None,
        retry_after: timedelta | None = None,
    ) -> None:
        super().__init__(message)
        if error_code:
            self.error_code = error_code
        self.retry_after = retry_after


class Retryable(StepFailure):
    retryable = True


class NonRetryable(StepFailure):
    retryable = False
