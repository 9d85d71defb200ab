"""A fault proxy between the fleet and the substrate: AWS misbehaving, on purpose and counted.

One local listener per service (DynamoDB, SQS, S3); the fleet's ``AWS_ENDPOINT_URL_*`` point at
them, and each request is forwarded to the real endpoint (moto, LocalStack, DynamoDB Local)
unless a fault is drawn for it:

| fault     | what the client sees                                                  |
|-----------|-----------------------------------------------------------------------|
| throttle  | the service's own throttling error, in its wire shape (not forwarded) |
| error     | a 500 in the service's shape; half of them after forwarding, so the   |
|           | change happened although the client is told it failed                 |
| latency   | the answer, 50 ms to 1 s late                                         |
| drop      | the connection closed without an answer                               |
| blackout  | every connection closed at once, for a period (the service is gone)   |

HTTP/1.1 is parsed with h11 (keep-alive included), and the forwarded call goes through httpx,
so the proxy understands each request's operation (``X-Amz-Target``, or the S3 method) and
passes bodies and answers through byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h11
import httpx

SERVICES = ("dynamodb", "sqs", "s3")
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
"""Status, headers and body of an HTTP answer."""
_HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"host"}


@dataclass(frozen=True)
class FaultRates:
    """The share of requests each fault is drawn for (independently of one another)."""

    throttle: float = 0.0
    error: float = 0.0
    latency: float = 0.0
    drop: float = 0.0

    @property
    def any(self) -> bool:
        return any((self.throttle, self.error, self.latency, self.drop))


@dataclass
class FaultTally:
    """Faults injected so far, by kind and by ``service.kind``; safe to read from any thread."""

    counts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, service: str, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1
            self.counts[f"{service}.{kind}"] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self.counts.items()))


class FaultProxy:
    """Runs in its own thread and event loop; ``endpoints`` are what the fleet should use."""

    def __init__(self, upstreams: dict[str, str], rates: FaultRates, *, rng: random.Random) -> None:
        self.upstreams, self.rates, self.rng = upstreams, rates, rng
        self.tally = FaultTally()
        self.endpoints: dict[str, str] = {}
        self._dark_until = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faults", daemon=True)
        self._servers: list[asyncio.Server] = []
        self._open: set[asyncio.StreamWriter] = set()
        self._client: httpx.AsyncClient | None = None

    def start(self) -> dict[str, str]:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self.endpoints

    def blackout(self, seconds: float) -> None:
        """Every service unreachable for ``seconds`` from now."""

        def begin() -> None:
            self._dark_until = self._loop.time() + seconds
            self.tally.add("all", "blackout")

        self._loop.call_soon_threadsafe(begin)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- serving ------------------------------------------------------------------------------

    async def _listen(self) -> None:
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(70.0), limits=httpx.Limits())
        for service in SERVICES:
            server = await asyncio.start_server(self._serving(service), "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            self._servers.append(server)
            self.endpoints[service] = f"http://127.0.0.1:{port}"

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._open):
            writer.close()
        for server in self._servers:
            await server.wait_closed()
        if self._client is not None:
            await self._client.aclose()

    def _serving(
        self, service: str
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._connection(service, reader, writer)

        return serve

    async def _connection(
        self, service: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        connection = h11.Connection(h11.SERVER)
        self._open.add(writer)
        try:
            while True:
                request = await _read_request(connection, reader)
                if request is None:
                    return
                answer = await self._answer(service, *request)
                if answer is None:  # dropped: no answer at all
                    writer.transport.abort()
                    return
                status, headers, body = answer
                headers = [(b"content-length", str(len(body)).encode()), *headers]
                writer.write(connection.send(h11.Response(status_code=status, headers=headers)))
                writer.write(connection.send(h11.Data(data=body)) or b"")
                writer.write(connection.send(h11.EndOfMessage()) or b"")
                await writer.drain()
                if connection.our_state is h11.MUST_CLOSE:
                    return
                connection.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError):
            return
        finally:
            self._open.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _answer(self, service: str, request: h11.Request, body: bytes) -> Answer | None:
        if self._loop.time() < self._dark_until:
            self.tally.add(service, "refused_in_blackout")
            return None
        rates, draw = self.rates, self.rng.random
        if rates.drop and draw() < rates.drop:
            self.tally.add(service, "drop")
            return None
        if rates.latency and draw() < rates.latency:
            self.tally.add(service, "latency")
            await asyncio.sleep(self.rng.uniform(0.05, 1.0))
        if rates.throttle and draw() < rates.throttle:
            self.tally.add(service, "throttle")
            return throttled(service, request)
        after = rates.error and draw() < rates.error
        if after and draw() < 0.5:
            self.tally.add(service, "error")
            return server_error(service, request)
        forwarded = await self._forward(service, request, body)
        if forwarded is None:  # the real service is down (a restart): as unreachable
            return None
        if after:
            self.tally.add(service, "error_after_change")
            return server_error(service, request)
        return forwarded

    async def _forward(self, service: str, request: h11.Request, body: bytes) -> Answer | None:
        assert self._client is not None
        headers = [(k, v) for k, v in request.headers if k.lower() not in _HOP_BY_HOP]
        url = self.upstreams[service].rstrip("/") + request.target.decode()
        try:
            upstream = await self._client.send(
                self._client.build_request(
                    request.method.decode(), url, headers=headers, content=body
                ),
                stream=True,
            )
            try:
                raw = b"".join([chunk async for chunk in upstream.aiter_raw()])
            finally:
                await upstream.aclose()
        except httpx.TransportError:
            return None
        kept = [
            (k.encode(), v.encode())
            for k, v in upstream.headers.multi_items()
            if k.encode().lower() not in _HOP_BY_HOP
        ]
        return upstream.status_code, kept, raw


async def _read_request(
    connection: h11.Connection, reader: asyncio.StreamReader
) -> tuple[h11.Request, bytes] | None:
    """The next request on the connection and its whole body; None once the client is done."""
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            connection.receive_data(data)
            if not data and request is None:
                return None
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return request, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            return None


# -- errors in each service's wire shape -----------------------------------------------------------


def _header(request: h11.Request, name: bytes) -> str:
    return next((v.decode() for k, v in request.headers if k.lower() == name), "")


def throttled(service: str, request: h11.Request) -> Answer:
    if service == "dynamodb":
        return _json_error(
            400, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded.",
        )  # fmt: skip
    if service == "sqs":
        return _sqs_error(request, 400, "RequestThrottled", "Sender", "Rate exceeded")
    return _s3_error(503, "SlowDown", "Please reduce your request rate.")


def server_error(service: str, request: h11.Request) -> Answer:
    if service == "dynamodb":
        return _json_error(
            500, "com.amazonaws.dynamodb.v20120810#InternalServerError", "Internal server error"
        )
    if service == "sqs":
        return _sqs_error(request, 500, "InternalError", "Receiver", "We encountered an error")
    return _s3_error(500, "InternalError", "We encountered an internal error. Please try again.")


def _json_error(
    status: int, kind: str, message: str, extra: list[tuple[bytes, bytes]] | None = None
) -> Answer:
    body = json.dumps({"__type": kind, "message": message}).encode()
    return status, [(b"content-type", b"application/x-amz-json-1.0"), *(extra or [])], body


def _sqs_error(request: h11.Request, status: int, code: str, fault: str, message: str) -> Answer:
    if "json" in _header(request, b"content-type"):
        # SQS's JSON protocol names the query-compatible code in a header, which botocore reads.
        query_error = [(b"x-amzn-query-error", f"{code};{fault}".encode())]
        return _json_error(status, f"com.amazonaws.sqs#{code}", message, query_error)
    body = (
        f"<ErrorResponse><Error><Type>{fault}</Type><Code>{code}</Code>"
        f"<Message>{message}</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
    ).encode()
    return status, [(b"content-type", b"text/xml")], body


def _s3_error(status: int, code: str, message: str) -> Answer:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>{message}</Message><RequestId>fault</RequestId></Error>"
    ).encode()
    return status, [(b"content-type", b"application/xml")], body
