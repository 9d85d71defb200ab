"""kombu's ``sqs`` transport, asking LocalStack to keep its connections as tpf's clients do.

LocalStack's gateway closes each connection after its response unless the request asks to
keep it (``tpf.substrate.keep_connections``); AWS keeps them either way. tpf's clients ask, so
Celery's must too, or the peer would pay for a TCP connection per request that it would not
pay on AWS. kombu makes one boto3 client per channel and signs its long polls (sent through
its own HTTP client) with that client's signer, so a handler on the client's ``before-sign``
event reaches every request. The header is signed with the rest: LocalStack checks no
signature, and the peer runs only there.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import SQS

from tpf.substrate import ask_to_keep_alive


class Channel(SQS.Channel):
    def _new_boto_client(self, *args: Any, **kwargs: Any) -> Any:
        client = super()._new_boto_client(*args, **kwargs)
        client.meta.events.register("before-sign.sqs", ask_to_keep_alive)
        return client


class Transport(SQS.Transport):
    Channel = Channel
