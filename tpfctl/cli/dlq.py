"""``tpf dlq``: inspect the dead-letter queue behind every queue, and move its messages back.

Replay is receive-and-resend, not SQS's ``StartMessageMoveTask``, because moto lacks that call
and one code path should serve every substrate. It sends before it deletes: a message whose
send failed stays in the DLQ and is reported, so a replay may duplicate a message (consumers
are fenced by transition key and version) but never loses one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from botocore.exceptions import ClientError
from rich.table import Table

from infra._queues import url_of
from infra.resources import WORK_QUEUE_PREFIX, Queue, describe, work_visibility
from tpf.errors import InvalidInput, TpfError
from tpf.settings import Settings
from tpf.substrate import sync_client
from tpfctl.cli.common import out, print_json
from tpfctl.cli.tables import Column, Wide, build_table, short_id

app = typer.Typer(help="Inspect and replay the dead-letter queues.", no_args_is_help=True)

BATCH = 10  # SQS's limit per receive, send and delete request
BATCH_BYTES = 256 * 1024  # SendMessageBatch's limit on the sum of bodies and attributes
PEEK_VISIBILITY_S = 10  # a peeked message is hidden this long at most: released right after
REPLAY_VISIBILITY_S = 60  # long enough to send and delete one batch
_SUMMARY_FIELDS = ("kind", "type", "executionId", "transitionKey", "status", "errorCode")

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
QueueName = Annotated[str, typer.Argument(help="Logical queue name, e.g. work.")]


@dataclass
class ReplayReport:
    queue: str
    moved: int = 0
    """Messages sent back to the queue (in a dry run: that would be); a delete from the DLQ
    that failed afterwards is listed in ``failures``, the message then being in both."""
    failed: int = 0
    """Messages whose send failed: they are still in the DLQ."""
    dry_run: bool = False
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "moved": self.moved,
            "failed": self.failed,
            "dryRun": self.dry_run,
            "failures": self.failures,
        }


def _receive(sqs: Any, url: str, max_messages: int, visibility_s: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=max_messages,
        VisibilityTimeout=visibility_s,
        WaitTimeSeconds=1,  # a short long-poll: real SQS may answer a short poll with nothing
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
    ).get("Messages", [])
    return messages


def _entry(index: int, message: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": str(index), "MessageBody": message["Body"]}
    if attributes := message.get("MessageAttributes"):
        keep = ("DataType", "StringValue", "BinaryValue")
        entry["MessageAttributes"] = {
            name: {k: v for k, v in value.items() if k in keep}
            for name, value in attributes.items()
        }
    return entry


def _chunks(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Entries grouped so no SendMessageBatch exceeds its size limit."""
    chunks: list[list[dict[str, Any]]] = [[]]
    size = 0
    for entry in entries:
        n = len(json.dumps(entry, default=str).encode())  # over-estimates: bounded, not exact
        if chunks[-1] and size + n > BATCH_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(entry)
        size += n
    return chunks


def _move(
    sqs: Any, source_url: str, dlq_url: str, batch: list[dict[str, Any]], report: ReplayReport
) -> None:
    """Send ``batch`` to the source queue, then delete from the DLQ exactly what was sent."""
    for entries in _chunks([_entry(i, m) for i, m in enumerate(batch)]):
        try:
            sent = sqs.send_message_batch(QueueUrl=source_url, Entries=entries)
        except ClientError as exc:
            sent = {"Failed": [{"Id": e["Id"], "Code": str(exc)} for e in entries]}
        for failed in sent.get("Failed", []):
            report.failed += 1
            report.failures.append(f"{batch[int(failed['Id'])]['MessageId']}: {failed['Code']}")
        ok = [batch[int(s["Id"])] for s in sent.get("Successful", [])]
        report.moved += len(ok)
        if not ok:
            continue
        receipts = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(ok)]
        deleted = sqs.delete_message_batch(QueueUrl=dlq_url, Entries=receipts)
        for failed in deleted.get("Failed", []):
            message_id = ok[int(failed["Id"])]["MessageId"]
            report.failures.append(f"{message_id}: sent but still in the DLQ: {failed['Code']}")


def replay(sqs: Any, source_url: str, dlq_url: str, limit: int | None = None) -> ReplayReport:
    """Move up to ``limit`` messages (all when None) from ``dlq_url`` back to ``source_url``."""
    report = ReplayReport(queue=source_url.rsplit("/", 1)[-1])
    taken = 0
    while limit is None or taken < limit:
        want = BATCH if limit is None else min(BATCH, limit - taken)
        batch = _receive(sqs, dlq_url, want, REPLAY_VISIBILITY_S)
        if not batch:
            break
        taken += len(batch)
        _move(sqs, source_url, dlq_url, batch, report)
    return report


def summarize(message: dict[str, Any]) -> dict[str, Any]:
    """What an operator needs to recognize a message, from a wire or dead-letter envelope."""
    attributes, body = message.get("Attributes", {}), message["Body"]
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    fields = {k: doc[k] for k in _SUMMARY_FIELDS if k in doc} if isinstance(doc, dict) else {}
    sent_ms = int(attributes.get("SentTimestamp", 0))
    sent = datetime.fromtimestamp(sent_ms / 1000, UTC).isoformat(timespec="seconds")
    has_kind = "kind" in fields or "type" in fields
    return {
        "messageId": message["MessageId"],
        "receiveCount": int(attributes.get("ApproximateReceiveCount", 0)),
        "sentAt": sent if sent_ms else None,
        **fields,
        "summary": " ".join(str(v) for v in fields.values()) if has_kind else body[:80],
    }


def peek(sqs: Any, url: str, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` messages, summarized and left in the queue (made visible again at once)."""
    found: dict[str, dict[str, Any]] = {}
    receipts: list[str] = []
    while len(found) < limit:
        batch = _receive(sqs, url, min(BATCH, limit - len(found)), PEEK_VISIBILITY_S)
        if not batch:
            break
        receipts += [m["ReceiptHandle"] for m in batch]
        found.update((m["MessageId"], summarize(m)) for m in batch)
    for i in range(0, len(receipts), BATCH):
        entries = [
            {"Id": str(j), "ReceiptHandle": receipt, "VisibilityTimeout": 0}
            for j, receipt in enumerate(receipts[i : i + BATCH])
        ]
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
    return list(found.values())


def _queues(settings: Settings, sqs: Any) -> tuple[Queue, ...]:
    """The stack's queues, and the work queue of every release that has one now."""
    prefix = settings.resource(WORK_QUEUE_PREFIX)
    pages = sqs.get_paginator("list_queues").paginate(QueueNamePrefix=prefix)
    names = sorted(
        url.rsplit("/", 1)[-1].removeprefix(settings.resource(""))
        for page in pages
        for url in page.get("QueueUrls", [])
    )
    visibility = work_visibility(settings)
    releases = tuple(Queue(n, visibility) for n in names if not n.endswith("-dlq"))
    return describe(settings).queues + releases


def _queue(settings: Settings, sqs: Any, name: str) -> Queue:
    queues = _queues(settings, sqs)
    for queue in queues:
        if queue.name == name:
            return queue
    valid = ", ".join(q.name for q in queues)
    raise InvalidInput(f"unknown queue {name!r}: expected one of {valid}")


def _url(sqs: Any, physical: str) -> str:
    url = url_of(sqs, physical)
    if url is None:
        raise TpfError(f"queue {physical} does not exist: run `tpf infra up`")
    return url


def counts(sqs: Any, settings: Settings, queues: list[Queue]) -> list[dict[str, Any]]:
    """One row per queue: its DLQ and the DLQ's approximate message counts (None when absent)."""
    rows = []
    for queue in queues:
        dlq = settings.resource(queue.dead_letter_name)
        url = url_of(sqs, dlq)
        row = {"queue": queue.name, "dlq": dlq, "exists": url is not None}
        row.update(visible=None, inFlight=None)
        if url:
            names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
            row.update(visible=int(found[names[0]]), inFlight=int(found[names[1]]))
        rows.append(row)
    return rows


@app.command("list")
def list_command(
    queue: Annotated[str | None, typer.Argument(help="Only this queue (logical name).")] = None,
    messages: Annotated[bool, typer.Option(help="Peek at the DLQ's messages.")] = False,
    source: Annotated[
        bool,
        typer.Option(
            help="Peek at the queue itself, e.g. dead-letters (implies --messages). Each peek "
            "counts as a receive: past maxReceiveCount SQS moves a message to the DLQ."
        ),
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Messages to peek at.")] = 10,
    wide: Wide = False,
    as_json: Json = False,
) -> None:
    """Count the messages in every DLQ, or peek at one queue's without removing them."""
    settings = Settings()
    if (messages or source) and queue is None:
        raise InvalidInput("--messages and --source need a QUEUE")
    sqs = sync_client(settings, "sqs")
    chosen = [_queue(settings, sqs, queue)] if queue else list(_queues(settings, sqs))
    if not (messages or source):
        rows = counts(sqs, settings, chosen)
        if as_json:
            print_json(rows)
            return
        out.print(count_table(rows, wide=wide))
        return
    physical = chosen[0].name if source else chosen[0].dead_letter_name
    found = peek(sqs, _url(sqs, settings.resource(physical)), limit)
    if as_json:
        print_json(found)
        return
    out.print(peek_table(settings.resource(physical), found, wide=wide))


COUNTS = [
    Column("queue", whole=True),
    Column("messages", whole=True),
    Column("in flight", whole=True),
    Column("dlq", wide=True),
]


def count_table(rows: list[dict[str, Any]], *, wide: bool) -> Table:
    """One row per DLQ; its physical name with ``--wide``."""
    shown = [
        [r["queue"], r["visible"] if r["exists"] else "absent", r["inFlight"], r["dlq"]]
        for r in rows
    ]
    return build_table(None, COUNTS, shown, wide=wide)


PEEKED = [
    Column("message", identifier=True),
    Column("receives", whole=True),
    Column("sent", wide=True),
    Column("summary"),
]


def peek_table(title: str, messages: list[dict[str, Any]], *, wide: bool) -> Table:
    """Peeked messages; ids shortened and the execution in a summary too, unless ``--wide``."""
    rows = [
        [m["messageId"], m["receiveCount"], m["sentAt"], _brief(m, wide=wide)] for m in messages
    ]
    return build_table(title, PEEKED, rows, wide=wide)


def _brief(message: dict[str, Any], *, wide: bool) -> str:
    summary: str = message["summary"]
    execution_id = message.get("executionId")
    if wide or not isinstance(execution_id, str):
        return summary
    return summary.replace(execution_id, short_id(execution_id))


@app.command("replay")
def replay_command(
    queue: QueueName,
    limit: Annotated[int | None, typer.Option(min=1, help="Move at most this many.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Say how many would move; move none.")] = False,
    as_json: Json = False,
) -> None:
    """Move a queue's dead letters back to it: send first, delete after. Exit 1 if any failed."""
    settings = Settings()
    sqs = sync_client(settings, "sqs")
    spec = _queue(settings, sqs, queue)
    source_url = _url(sqs, settings.resource(spec.name))
    dlq_url = _url(sqs, settings.resource(spec.dead_letter_name))
    if dry_run:
        visible = counts(sqs, settings, [spec])[0]["visible"]
        report = ReplayReport(spec.name, moved=min(visible, limit or visible), dry_run=True)
    else:
        report = replay(sqs, source_url, dlq_url, limit)
        report.queue = spec.name
    if as_json:
        print_json(report.to_dict())
    else:
        verb = "would move" if dry_run else "moved"
        print(f"{spec.name}: {verb} {report.moved} from {settings.resource(spec.dead_letter_name)}")
        for failure in report.failures:
            print(f"  {failure}")
    if report.failed:
        raise typer.Exit(1)
