"""SQS connections stay open on LocalStack, as they do on AWS (``tpf.substrate.keep_connections``).

LocalStack's gateway closes a connection after each response unless the request asks to keep
it; the answer's ``Connection`` header says which it did.
"""

from __future__ import annotations

from typing import Any

from tests.substrates import TestStack
from tpf.accounting import RequestLedger
from tpf.substrate import open_clients, sync_client


def _connection(response: dict[str, Any]) -> str | None:
    headers: dict[str, str] = response["ResponseMetadata"]["HTTPHeaders"]
    return headers.get("connection")


async def test_the_roles_sqs_client_keeps_its_connections(localstack_stack: TestStack) -> None:
    stack = localstack_stack
    async with open_clients(
        stack.settings, endpoints=stack.endpoints, ledger=RequestLedger()
    ) as aws:
        answers = [await aws.sqs.list_queues(QueueNamePrefix=stack.settings.stack) for _ in "ab"]
    assert [_connection(a) for a in answers] == [None, None]


def test_the_scripts_sqs_client_keeps_its_connections(localstack_stack: TestStack) -> None:
    stack = localstack_stack
    sqs = sync_client(stack.settings, "sqs", endpoints=stack.endpoints, ledger=RequestLedger())
    answers = [sqs.list_queues(QueueNamePrefix=stack.settings.stack) for _ in "ab"]
    assert [_connection(a) for a in answers] == [None, None]
