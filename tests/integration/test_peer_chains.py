"""The peer's Celery side on LocalStack SQS: supervised workers run the orders chain end to end,
the round is timed from its completion records, and nothing is left behind.

Celery is the ``bench`` extra, which CI does not install (it runs no benchmarks): there, and
wherever the extra is missing, this module skips. The rest of the peer is in
``tests/unit/test_peer_bench.py``.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from tests.substrates import localstack_endpoints, localstack_unavailable, require

pytest.importorskip("celery", reason="the 'bench' extra (Celery) is not installed")
pytest.importorskip("pycurl", reason="the 'bench' extra (pycurl) is not installed")

from tpfctl.bench.peer import chains  # Celery is there: checked just above

pytestmark = [pytest.mark.substrate, pytest.mark.timeout(90)]


@pytest.fixture
def sqs_endpoint() -> str:
    endpoints = localstack_endpoints()
    require(localstack_unavailable(endpoints))
    assert endpoints.sqs is not None
    return endpoints.sqs


def test_a_celery_worker_runs_every_chain_and_leaves_no_process_or_queue_behind(
    sqs_endpoint: str, tmp_path: Path
) -> None:
    shape = chains.Shape(workers=1, threads=2, submit_lanes=2)
    with chains.started(sqs_endpoint, tmp_path, shape) as peer:
        done = peer.run("t1", 5, timeout_s=60)
        finished = dict(peer._finished())
        processes = list(peer.processes)
    assert done.executions == 5 and done.statuses == {"COMPLETED": 5}
    assert done.seconds > 0 and done.executions_per_second > 0
    assert done.cpu_seconds is not None and done.cpu_seconds > 0
    assert set(finished) == {f"t1-{i}" for i in range(5)}
    assert all(p.poll() is not None for p in processes)
    sqs = boto3.client("sqs", endpoint_url=sqs_endpoint, region_name="us-east-1")
    assert sqs.list_queues(QueueNamePrefix=peer.queue_prefix).get("QueueUrls", []) == []


def test_celerys_sqs_requests_keep_their_connections_as_tpfs_do(sqs_endpoint: str) -> None:
    """Both sides of the comparison on the same terms: LocalStack closes a connection after
    each answer unless the request asks to keep it (``tpfctl.bench.peer.transport``)."""
    from botocore.awsrequest import AWSRequest

    from tpfctl.bench.peer import celery_app

    app = celery_app.client(sqs_endpoint, "keepalive-probe-", submit_lanes=1)
    try:
        with app.connection_for_write() as connection:
            client = connection.default_channel.sqs()
            answer = client.list_queues(QueueNamePrefix="keepalive-probe-")
            # kombu signs its long polls with the same client's signer, then sends them itself.
            poll = AWSRequest(method="POST", url=sqs_endpoint, data={"Action": "ReceiveMessage"})
            client._request_signer.sign("ReceiveMessage", poll)
    finally:
        app.close()
    assert answer["ResponseMetadata"]["HTTPHeaders"].get("connection") is None
    assert poll.headers["Connection"] == "keep-alive"
