"""Pure building blocks of the CSV payments pipeline: parse, decide, write. No AWS calls.

Input file
    UTF-8 (an initial BOM is allowed), header exactly ``ID,Recipient,Amount,Currency`` (cells
    stripped of surrounding whitespace, then matched case-sensitively), then one payment per
    row. Blank lines are skipped, also before the header. Line numbers are the file's physical
    lines, as an editor shows them (the header is usually line 1); a quoted field spanning
    lines gives its row the number of its first line.

File-level errors end the execution: they raise :class:`NonRetryable` with ``CSV_NOT_UTF8``,
``CSV_EMPTY`` (no bytes or only whitespace), ``CSV_BAD_HEADER`` (no header or another one),
``CSV_MALFORMED`` (what the ``csv`` module refuses, such as a field over its size limit),
``CSV_TOO_LARGE`` (more bytes than :class:`Limits` allow) or ``CSV_TOO_MANY_ROWS``.

Row-level errors reject only that row, as a :class:`RejectedLine` with the first reason found,
checked in this order: column count, a cell longer than :class:`Limits` allow, empty id, an
id outside :data:`PAYMENT_ID` (ASCII letters and digits first, then also ``.``, ``_``, ``-``;
at most 64 characters: no formula can start one, and no look-alike letter from another script
passes), duplicate id (any earlier row
carrying the id, valid or not, is its first occurrence), empty recipient, unknown currency
(an ISO 4217 code from :data:`MINOR_UNITS`, upper case), amount not a plain decimal (``12``,
``12.5``; no ``+``, exponent or separators), not above zero, more than 18 integer digits, or
more decimals than the currency's minor units (trailing zeros count: ``1.230`` USD is
rejected). Cells are stripped; an accepted amount is carried as a string with exactly the
currency's minor units (``"12.50"``), computed with :class:`~decimal.Decimal` only.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict

from tpf.errors import NonRetryable
from tpf.pipeline import Owner

HEADER: Final = ("ID", "Recipient", "Amount", "Currency")
OUTPUT_HEADER: Final = ("ID", "Status", "ProviderReference", "Fee", "Message")
LIMIT_MAJOR_UNITS: Final = Decimal(10_000)
"""The provider rejects amounts above this, in the currency's major unit."""
MAX_INTEGER_DIGITS: Final = 18

# fmt: off
MINOR_UNITS: Final[Mapping[str, int]] = MappingProxyType({
    "AED": 2, "AUD": 2, "BRL": 2, "CAD": 2, "CHF": 2, "CNY": 2, "CZK": 2, "DKK": 2, "EUR": 2,
    "GBP": 2, "HKD": 2, "HUF": 2, "ILS": 2, "INR": 2, "MXN": 2, "NOK": 2, "NZD": 2, "PLN": 2,
    "RON": 2, "SEK": 2, "SGD": 2, "THB": 2, "TRY": 2, "USD": 2, "ZAR": 2,
    "CLP": 0, "ISK": 0, "JPY": 0, "KRW": 0, "VND": 0,
    "BHD": 3, "JOD": 3, "KWD": 3, "OMR": 3, "TND": 3,
})
# fmt: on
"""ISO 4217 codes accepted, with their minor units (decimal places)."""

PAYMENT_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""What a payment id may be: it keys the provider's idempotency and appears in every output."""
PROVIDER_REFERENCE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
"""What a provider's reference must look like to be written to the output."""
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
"""A cell starting with one of these is a formula to a spreadsheet (OWASP, CSV injection)."""

ANSWER_STATUSES: Final = ("APPROVED", "REJECTED")
_OWNER_OUTCOME: Final = {
    "PENDING": "awaiting the provider's answer",
    "TIMED_OUT": "no answer from the provider",
    "COMPLETED": "answered",
}
_NO_ANSWER: Final = "no answer from the payment provider"
MAX_RAW: Final = 200
"""Characters of a rejected row kept with it (for the operator; the output gives the reason)."""
_AMOUNT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


class Limits(BaseSettings):
    """What one file may hold, from ``TPF_CSV_MAX_BYTES``, ``TPF_CSV_MAX_ROWS`` and
    ``TPF_CSV_MAX_CELL`` (characters). A cell is bounded so that no payment, and so no await
    request, can outgrow what one interaction holds."""

    model_config = SettingsConfigDict(env_prefix="TPF_CSV_", frozen=True)

    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    max_rows: int = Field(default=100_000, ge=1)
    max_cell: int = Field(default=1_024, ge=1, le=64 * 1024)


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True
    )


class PaymentRecord(_Model):
    line: int
    payment_id: str
    recipient: str
    amount: str
    """Exactly the currency's minor units of decimals, e.g. ``"12.50"``, ``"1200"`` (JPY)."""
    currency: str


class RejectedLine(_Model):
    line: int
    payment_id: str | None
    """The row's first cell when not empty."""
    reason: str
    raw: str
    """The row as it is in the file, without its line ending."""


class ParsedFile(_Model):
    payments: list[PaymentRecord]
    rejected: list[RejectedLine]
    total_lines: int = Field(description="Non-blank data rows: len(payments) + len(rejected).")


class ProviderAnswer(_Model):
    """What a provider answers for one payment. Its fields are checked per row when the output
    is written (:func:`answer_problem`), so a wrong answer marks its row ``ERROR`` instead of
    being refused at completion and leaving the payment without an answer."""

    status: Literal["APPROVED", "REJECTED"]
    provider_reference: str = Field(max_length=256)
    fee: str = Field(max_length=64)
    message: str = Field(max_length=1024)


class OutputLine(_Model):
    line: int
    payment_id: str | None
    status: Literal["APPROVED", "REJECTED", "INVALID", "NO_ANSWER", "ERROR", "DUPLICATE"]
    provider_reference: str = ""
    fee: str = ""
    message: str


def parse_csv(data: bytes, limits: Limits | None = None) -> ParsedFile:
    """Parse and validate a whole payments file held in memory (see :func:`parse_lines`)."""
    limits = limits or Limits()
    check_size(len(data), limits)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise not_utf8(error.start) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise empty_file()
    payments: list[PaymentRecord] = []
    rejected: list[RejectedLine] = []
    for row in parse_lines(io.StringIO(text, newline=""), limits):
        (payments if isinstance(row, PaymentRecord) else rejected).append(row)  # type: ignore[arg-type]
    return ParsedFile(
        payments=payments, rejected=rejected, total_lines=len(payments) + len(rejected)
    )


def parse_lines(lines: Iterable[str], limits: Limits) -> Iterator[PaymentRecord | RejectedLine]:
    """The rows of a file, in order, each accepted or rejected (see the module docstring).

    ``lines`` are its physical lines as text, endings kept (``open(..., newline="")``), BOM
    removed. The file's problems raise :class:`NonRetryable` when they are met; memory holds
    one row and the ids seen so far.
    """
    rows = (row for row in _records(lines) if not _blank(row[1]))
    try:
        header = next(rows, None)
        if header is None:
            raise NonRetryable("the file has no header row", error_code="CSV_BAD_HEADER")
        if tuple(cell.strip() for cell in header[1]) != HEADER:
            raise NonRetryable(
                f"expected header {','.join(HEADER)!r}, found {_show(header[2])}",
                error_code="CSV_BAD_HEADER",
            )
        first_line: dict[str, int] = {}
        for count, (line, row, raw) in enumerate(rows, start=1):
            if count > limits.max_rows:
                raise NonRetryable(
                    f"the file has more than {limits.max_rows} rows",
                    error_code="CSV_TOO_MANY_ROWS",
                )
            payment_id = row[0].strip() or None
            seen = first_line.get(payment_id) if payment_id else None
            outcome = _validate(line, row, seen, limits.max_cell)
            if payment_id is not None:
                first_line.setdefault(payment_id, line)
            if isinstance(outcome, PaymentRecord):
                yield outcome
            else:
                yield RejectedLine(
                    line=line,
                    payment_id=_cut(payment_id, limits.max_cell),
                    reason=outcome,
                    raw=_cut(raw, min(MAX_RAW, limits.max_cell)) or "",
                )
    except csv.Error as error:
        raise NonRetryable(
            f"the file is not valid CSV: {error}", error_code="CSV_MALFORMED"
        ) from None


def not_utf8(offset: int) -> NonRetryable:
    return NonRetryable(
        f"the file is not UTF-8 (invalid byte at offset {offset})", error_code="CSV_NOT_UTF8"
    )


def empty_file() -> NonRetryable:
    return NonRetryable("the file is empty", error_code="CSV_EMPTY")


def check_size(size: int, limits: Limits) -> None:
    if size > limits.max_bytes:
        raise NonRetryable(
            f"the file is {size} bytes; at most {limits.max_bytes} are read",
            error_code="CSV_TOO_LARGE",
        )


def provider_decision(payment: PaymentRecord) -> ProviderAnswer:
    """The payment provider mock's deterministic answer for ``payment``.

    REJECTED with ``"amount over limit"`` when the amount exceeds 10,000 major units, else with
    ``"recipient blocked"`` when the recipient contains ``blocked`` in any case; otherwise
    APPROVED with ``"ok"``. The reference is ``PRV-`` and the first 12 hex digits of the sha256
    of ``id|recipient|amount|currency``. An approved payment's fee is 1% of the amount plus 0.30,
    rounded half-up to the currency's minor units; for currencies without minor units (JPY,
    KRW...) it is 1% rounded half-up to a whole unit, and at least 1. A rejected payment's fee
    is zero with the currency's minor units (``"0.00"``, ``"0"``, ``"0.000"``).
    """
    digits = MINOR_UNITS[payment.currency]
    amount = Decimal(payment.amount)
    key = "|".join((payment.payment_id, payment.recipient, payment.amount, payment.currency))
    reference = "PRV-" + hashlib.sha256(key.encode()).hexdigest()[:12]
    if amount > LIMIT_MAJOR_UNITS:
        return _rejected(reference, digits, "amount over limit")
    if "blocked" in payment.recipient.casefold():
        return _rejected(reference, digits, "recipient blocked")
    if digits == 0:
        fee = max(_minor(amount / 100, 0), Decimal(1))
    else:
        fee = _minor(amount / 100 + Decimal("0.30"), digits)
    return ProviderAnswer(
        status="APPROVED", provider_reference=reference, fee=str(fee), message="ok"
    )


def rejected_line(bad: RejectedLine) -> OutputLine:
    return OutputLine(
        line=bad.line, payment_id=bad.payment_id, status="INVALID", message=bad.reason
    )


def output_lines(
    parsed: ParsedFile,
    answers: dict[str, ProviderAnswer],
    duplicates: Mapping[str, Owner] | None = None,
) -> list[OutputLine]:
    """One line per data row, in file order: the provider's answer, ``INVALID``, ``DUPLICATE``
    or ``NO_ANSWER``.

    ``answers`` and ``duplicates`` are keyed by payment id (ids are unique among accepted
    payments). An answer that fails :func:`answer_problem` makes its row ``ERROR`` with the
    reason; a payment another execution sent first is ``DUPLICATE``, naming it and its outcome.
    """
    duplicates = duplicates or {}
    lines = [rejected_line(bad) for bad in parsed.rejected]
    for payment in parsed.payments:
        lines.append(_line_of(payment, answers.get(payment.payment_id), duplicates))
    return sorted(lines, key=lambda line: line.line)


def _line_of(
    payment: PaymentRecord, answer: ProviderAnswer | None, duplicates: Mapping[str, Owner]
) -> OutputLine:
    return line_of(payment, answer, duplicates.get(payment.payment_id))


def line_of(
    payment: PaymentRecord, answer: ProviderAnswer | None, owner: Owner | None
) -> OutputLine:
    """The output line of one payment: its answer, ``DUPLICATE``, ``ERROR`` or ``NO_ANSWER``."""
    line, payment_id = payment.line, payment.payment_id
    if owner is not None:
        return OutputLine(
            line=line, payment_id=payment_id, status="DUPLICATE", message=duplicate_note(owner)
        )
    if answer is None:
        return OutputLine(line=line, payment_id=payment_id, status="NO_ANSWER", message=_NO_ANSWER)
    problem = answer_problem(payment, answer)
    if problem:
        return OutputLine(line=line, payment_id=payment_id, status="ERROR", message=problem)
    return OutputLine(
        line=line,
        payment_id=payment_id,
        status=answer.status,
        provider_reference=answer.provider_reference,
        fee=answer.fee,
        message=answer.message,
    )


def duplicate_note(owner: Owner) -> str:
    """``already sent by execution <id> (APPROVED)``: who paid it, and how that went."""
    outcome = _OWNER_OUTCOME.get(owner.status, owner.status)
    if isinstance(owner.response, dict) and owner.response.get("status") in ANSWER_STATUSES:
        outcome = str(owner.response["status"])
    return f"already sent by execution {owner.execution_id} ({outcome})"


def answer_problem(payment: PaymentRecord, answer: ProviderAnswer) -> str | None:
    """Why the provider's answer cannot be written as it is, or None.

    The fee is a non-negative plain decimal with at most the currency's minor units (``2.801``
    EUR is wrong, not rounded); the reference matches :data:`PROVIDER_REFERENCE`.
    """
    digits = MINOR_UNITS[payment.currency]
    fee = answer.fee
    if not _AMOUNT.fullmatch(fee) or fee.startswith("-"):
        return f"provider answered fee {_show(fee)}, not a non-negative decimal"
    if len(fee.partition(".")[2]) > digits:
        return f"provider answered fee {_show(fee)} with more than {digits} decimals"
    if not PROVIDER_REFERENCE.fullmatch(answer.provider_reference):
        return f"provider answered reference {_show(answer.provider_reference)}, not a reference"
    return None


def render_csv(lines: list[OutputLine]) -> bytes:
    """The output file: :func:`render_header`, then :func:`render_line` for each line."""
    return (render_header() + "".join(render_line(line) for line in lines)).encode()


def render_header() -> str:
    """``ID,Status,ProviderReference,Fee,Message``, UTF-8, ``\\n`` line endings."""
    return ",".join(OUTPUT_HEADER) + "\n"


def render_line(line: OutputLine) -> str:
    """One output line, every cell made inert (:func:`_inert`) and quoted where needed.

    Quoted by hand: on Python 3.11 ``csv.writer`` with ``lineterminator="\\n"`` leaves a
    field holding a lone ``\\r`` unquoted, which splits the row for every reader.
    """
    cells = (line.payment_id or "", line.status, line.provider_reference, line.fee, line.message)
    return ",".join(_quoted(_inert(c)) for c in cells) + "\n"


def _records(lines: Iterable[str]) -> Iterator[tuple[int, list[str], str]]:
    """``(first physical line, cells, raw text)`` for every CSV record of ``lines``."""
    consumed: list[str] = []

    def physical_lines() -> Iterator[str]:
        for physical in lines:
            consumed.append(physical)
            yield physical

    reader = csv.reader(physical_lines())
    first = 1
    for row in reader:
        raw = "".join(consumed).rstrip("\r\n")
        consumed.clear()
        yield first, row, raw
        first = reader.line_num + 1


def _blank(row: list[str]) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())


def _validate(
    line: int, row: list[str], first_seen: int | None, max_cell: int
) -> PaymentRecord | str:
    """The accepted payment, or the reason the row is rejected."""
    if len(row) != len(HEADER):
        return f"expected {len(HEADER)} columns, found {len(row)}"
    for column, cell in zip(HEADER, row, strict=True):
        if len(cell) > max_cell:
            return f"{column} is longer than {max_cell} characters"
    payment_id, recipient, text, currency = (cell.strip() for cell in row)
    if not payment_id:
        return "empty id"
    if not PAYMENT_ID.fullmatch(payment_id):
        return f"id {_show(payment_id)} is not 1-64 ASCII letters, digits, '.', '_' or '-'"
    if first_seen is not None:
        return f"duplicate id {payment_id} (first on line {first_seen})"
    if not recipient:
        return "empty recipient"
    digits = MINOR_UNITS.get(currency)
    if digits is None:
        return f"unknown currency code {_show(currency)}"
    if not _AMOUNT.fullmatch(text):
        return f"amount {_show(text)} is not a decimal number"
    amount = Decimal(text)
    if amount <= 0:
        return f"amount {_show(text)} is not greater than zero"
    whole, _, decimals = text.partition(".")
    if len(whole.lstrip("0")) > MAX_INTEGER_DIGITS:
        return f"amount {_show(text)} is too large"
    if len(decimals) > digits:
        return f"amount {_show(text)} has more than {digits} decimal places for {currency}"
    return PaymentRecord(
        line=line,
        payment_id=payment_id,
        recipient=recipient,
        amount=str(_minor(amount, digits)),
        currency=currency,
    )


def _minor(amount: Decimal, digits: int) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)


def _rejected(reference: str, digits: int, message: str) -> ProviderAnswer:
    fee = str(_minor(Decimal(0), digits))
    return ProviderAnswer(status="REJECTED", provider_reference=reference, fee=fee, message=message)


def _inert(cell: str) -> str:
    """The cell as text a spreadsheet will not evaluate: a leading ``'`` before any formula
    start (OWASP's CSV injection guidance); every other cell is unchanged."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def _quoted(cell: str) -> str:
    if any(special in cell for special in ',"\r\n'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def _cut(value: str | None, limit: int) -> str | None:
    """At most ``limit`` characters of ``value``, marked when cut."""
    if value is None or len(value) <= limit:
        return value
    return value[:limit] + "..."


def _show(value: str, limit: int = 40) -> str:
    """``repr`` of a cell for a message, cut short so one bad cell cannot flood the output."""
    return repr(value if len(value) <= limit else value[:limit] + "...")
