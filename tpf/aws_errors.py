"""What an AWS SDK error means for a retry: the one place botocore's exceptions are read.

``tpf.runtime`` asks here before falling back to ``unexpected``, so the category of an outage
or a refused credential is the same whichever adapter met it.
"""

from __future__ import annotations

from typing import Literal

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)

AwsCategory = Literal["auth", "timeout", "unavailable"]

_AUTH = {"AccessDenied", "AccessDeniedException", "UnrecognizedClientException",
         "InvalidClientTokenId", "InvalidSignatureException", "ExpiredToken",
         "ExpiredTokenException", "SignatureDoesNotMatch"}  # fmt: skip
_TIMEOUT = {"RequestTimeout", "RequestTimeoutException"}
_UNAVAILABLE = {"ServiceUnavailable", "InternalError", "InternalServerError", "SlowDown",
                "ThrottlingException", "Throttling", "RequestLimitExceeded",
                "ProvisionedThroughputExceededException"}  # fmt: skip


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the substrate is down or overloaded right now:
    worth waiting for, unlike a missing resource or a refused credential."""
    seen: BaseException | None = exc
    while seen is not None:
        if aws_category(seen) in ("unavailable", "timeout"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def aws_category(exc: BaseException) -> AwsCategory | None:
    """The category of an AWS SDK error, None for anything else (or a code we do not know)."""
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        return "timeout"
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | HTTPClientError):
        return "unavailable"
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _AUTH:
            return "auth"
        if code in _TIMEOUT:
            return "timeout"
        if code in _UNAVAILABLE:
            return "unavailable"
    return None
