from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from examples.csv_payments.records import (
    FORMULA_STARTS,
    MINOR_UNITS,
    PAYMENT_ID,
    OutputLine,
    ParsedFile,
    PaymentRecord,
    ProviderAnswer,
    RejectedLine,
    output_lines,
    parse_csv,
    provider_decision,
    render_csv,
)
from tpf.errors import NonRetryable

SAMPLE = Path(__file__).parents[2] / "examples" / "csv_payments" / "sample.csv"
HEADER = "ID,Recipient,Amount,Currency\n"
VALID_ROW = "p-ok,Ada,10.00,EUR"
FILE_ERRORS = {"CSV_NOT_UTF8", "CSV_EMPTY", "CSV_BAD_HEADER", "CSV_MALFORMED"}


def parse_text(text: str) -> ParsedFile:
    return parse_csv(text.encode("utf-8"))


def payment(
    amount: str, currency: str = "USD", recipient: str = "Ada", payment_id: str = "p-1"
) -> PaymentRecord:
    return PaymentRecord(
        line=2, payment_id=payment_id, recipient=recipient, amount=amount, currency=currency
    )


def input_csv(
    rows: list[tuple[str, str, str, str]], lineterminator: str = "\r\n", quote_all: bool = False
) -> bytes:
    """Rows as ``csv.writer`` writes them (with ``\\n`` it needs quote_all to quote a ``\\r``)."""
    out = io.StringIO(newline="")
    writer = csv.writer(
        out,
        lineterminator=lineterminator,
        quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL,
    )
    writer.writerow(("ID", "Recipient", "Amount", "Currency"))
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def file_error(data: bytes) -> str:
    with pytest.raises(NonRetryable) as caught:
        parse_csv(data)
    assert not caught.value.retryable
    return caught.value.error_code


# --- the sample file --------------------------------------------------------------------------


def test_sample_file_parses_into_payments_and_rejected_lines() -> None:
    parsed = parse_csv(SAMPLE.read_bytes())
    assert parsed.total_lines == 8
    assert [p.payment_id for p in parsed.payments] == [
        "p-001",
        "p-002",
        "p-003",
        "p-004",
        "p-006",
        "p-008",
    ]
    assert [(r.line, r.payment_id) for r in parsed.rejected] == [(6, "p-005"), (8, None)]
    answers = {p.payment_id: provider_decision(p) for p in parsed.payments}
    statuses = [line.status for line in output_lines(parsed, answers)]
    assert statuses.count("INVALID") == 2
    assert [a.message for a in answers.values()].count("recipient blocked") == 1


# --- file-level errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "CSV_EMPTY"),
        (b"   \n\t\r\n  ", "CSV_EMPTY"),
        (b"\xef\xbb\xbf", "CSV_EMPTY"),
        (b"\xef\xbb\xbf \n", "CSV_EMPTY"),
        (b"\xff\xfeI\x00D\x00", "CSV_NOT_UTF8"),
        ("ID,Recipient,Amount,Currency\n1,Müller,1,EUR\n".encode("latin-1"), "CSV_NOT_UTF8"),
        (HEADER.encode("utf-16"), "CSV_NOT_UTF8"),
        (b'""\n', "CSV_BAD_HEADER"),
        (b'\n"  "\n\n', "CSV_BAD_HEADER"),
        (b"p-1,Ada,10.00,EUR\n", "CSV_BAD_HEADER"),
        (b"id,recipient,amount,currency\n", "CSV_BAD_HEADER"),
        (b"ID,Recipient,Amount\n", "CSV_BAD_HEADER"),
        (b"ID,Recipient,Amount,Currency,Note\n", "CSV_BAD_HEADER"),
        (b"ID,Recipient,Amount,Currency,\n", "CSV_BAD_HEADER"),
        (b"ID;Recipient;Amount;Currency\n", "CSV_BAD_HEADER"),
        (b"Recipient,ID,Amount,Currency\n", "CSV_BAD_HEADER"),
    ],
)
def test_file_level_errors_end_the_execution(data: bytes, code: str) -> None:
    assert file_error(data) == code


def test_a_field_the_csv_module_refuses_is_malformed() -> None:
    data = (HEADER + 'p-1,"' + "x" * 200_000 + '",1,EUR\n').encode()
    assert file_error(data) == "CSV_MALFORMED"


def test_bad_header_message_names_what_was_found() -> None:
    with pytest.raises(NonRetryable, match=r"ID,Recipient,Amount,Currency.*'Id,Who'"):
        parse_csv(b"Id,Who\n")


@pytest.mark.parametrize(
    "data",
    [
        b"\xef\xbb\xbfID,Recipient,Amount,Currency\np-1,Ada,1.00,EUR\n",
        b"\xef\xbb\xbf ID , Recipient ,\tAmount,Currency  \r\np-1,Ada,1.00,EUR\r\n",
        b'"ID","Recipient","Amount","Currency"\np-1,Ada,1.00,EUR',
        b"\n\nID,Recipient,Amount,Currency\np-1,Ada,1.00,EUR\n",
    ],
)
def test_header_allows_bom_whitespace_quotes_and_leading_blank_lines(data: bytes) -> None:
    parsed = parse_csv(data)
    assert [p.payment_id for p in parsed.payments] == ["p-1"]
    assert parsed.rejected == []


def test_header_only_file_has_no_rows() -> None:
    assert parse_text(HEADER) == ParsedFile(payments=[], rejected=[], total_lines=0)


# --- row-level rejections ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("p-1,Ada,10.00", "expected 4 columns, found 3"),
        ("p-1", "expected 4 columns, found 1"),
        ("p-1,Ada,10.00,EUR,extra", "expected 4 columns, found 5"),
        ("p-1,Ada,10.00,EUR,", "expected 4 columns, found 5"),
        (",Ada,10.00,EUR", "empty id"),
        ("  ,Ada,10.00,EUR", "empty id"),
        (",,,", "empty id"),
        ("p-1, ,10.00,EUR", "empty recipient"),
        ("p-1,Ada,10.00,XYZ", "unknown currency code 'XYZ'"),
        ("p-1,Ada,10.00,usd", "unknown currency code 'usd'"),
        ("p-1,Ada,10.00,", "unknown currency code ''"),
        ("p-1,Ada,abc,EUR", "amount 'abc' is not a decimal number"),
        ("p-1,Ada,,EUR", "amount '' is not a decimal number"),
        ("p-1,Ada,1e3,EUR", "amount '1e3' is not a decimal number"),
        ("p-1,Ada,NaN,EUR", "amount 'NaN' is not a decimal number"),
        ("p-1,Ada,Infinity,EUR", "amount 'Infinity' is not a decimal number"),
        ('p-1,Ada,"1,000.00",EUR', "amount '1,000.00' is not a decimal number"),
        ("p-1,Ada,+5,EUR", "amount '+5' is not a decimal number"),
        ("p-1,Ada,5.,EUR", "amount '5.' is not a decimal number"),
        ("p-1,Ada,.5,EUR", "amount '.5' is not a decimal number"),
        ("p-1,Ada,١٢,EUR", "amount '١٢' is not a decimal number"),
        ("p-1,Ada,12 EUR,EUR", "amount '12 EUR' is not a decimal number"),
        ("p-1,Ada,-5.00,EUR", "amount '-5.00' is not greater than zero"),
        ("p-1,Ada,0,EUR", "amount '0' is not greater than zero"),
        ("p-1,Ada,0.00,EUR", "amount '0.00' is not greater than zero"),
        ("p-1,Ada,-0,EUR", "amount '-0' is not greater than zero"),
        ("p-1,Ada,1.234,USD", "amount '1.234' has more than 2 decimal places for USD"),
        ("p-1,Ada,1.230,USD", "amount '1.230' has more than 2 decimal places for USD"),
        ("p-1,Ada,100.5,JPY", "amount '100.5' has more than 0 decimal places for JPY"),
        ("p-1,Ada,100.0,KRW", "amount '100.0' has more than 0 decimal places for KRW"),
        ("p-1,Ada,1.2345,BHD", "amount '1.2345' has more than 3 decimal places for BHD"),
        ("p-1,Ada," + "9" * 19 + ",EUR", f"amount '{'9' * 19}' is too large"),
    ],
)
def test_each_rejection_reason(row: str, reason: str) -> None:
    parsed = parse_text(f"{HEADER}{VALID_ROW}\n{row}\n{VALID_ROW.replace('p-ok', 'p-ok2')}\n")
    assert [p.payment_id for p in parsed.payments] == ["p-ok", "p-ok2"]
    [rejected] = parsed.rejected
    assert rejected.line == 3
    assert rejected.reason == reason
    assert rejected.raw == row
    assert rejected.payment_id == (row.split(",")[0].strip() or None)
    assert parsed.total_lines == 3


def test_reasons_quote_long_cells_shortly() -> None:
    parsed = parse_text(f"{HEADER}p-1,Ada,{'x' * 5000},EUR\n")
    assert len(parsed.rejected[0].reason) < 100


def test_duplicate_ids_reject_later_occurrences() -> None:
    parsed = parse_text(
        HEADER + "p-1,Ada,1.00,EUR\np-2,Bob,2.00,EUR\n p-1 ,Cy,3.00,EUR\np-1,Di,4.00,EUR\n"
    )
    assert [p.payment_id for p in parsed.payments] == ["p-1", "p-2"]
    assert [(r.line, r.payment_id, r.reason) for r in parsed.rejected] == [
        (4, "p-1", "duplicate id p-1 (first on line 2)"),
        (5, "p-1", "duplicate id p-1 (first on line 2)"),
    ]


def test_duplicate_of_an_invalid_row_is_still_a_duplicate() -> None:
    parsed = parse_text(HEADER + "p-1,Ada,oops,EUR\np-1,Ada,1.00,EUR\n")
    assert parsed.payments == []
    assert [r.reason for r in parsed.rejected] == [
        "amount 'oops' is not a decimal number",
        "duplicate id p-1 (first on line 2)",
    ]


def test_ids_are_case_sensitive() -> None:
    parsed = parse_text(HEADER + "p-1,Ada,1.00,EUR\nP-1,Ada,1.00,EUR\n")
    assert [p.payment_id for p in parsed.payments] == ["p-1", "P-1"]


def test_blank_lines_are_skipped_and_lines_are_physical() -> None:
    text = (
        HEADER
        + "\np-1,Ada,1.00,EUR\n   \r\n\t\n"
        + 'p-2,"two\nline name",2.00,EUR\np-3,x,oops,EUR\n'
    )
    parsed = parse_text(text)
    assert [(p.line, p.payment_id) for p in parsed.payments] == [(3, "p-1"), (6, "p-2")]
    assert parsed.payments[1].recipient == "two\nline name"
    assert [(r.line, r.raw) for r in parsed.rejected] == [(8, "p-3,x,oops,EUR")]
    assert parsed.total_lines == 3


def test_cells_are_stripped() -> None:
    [record] = parse_text(HEADER + "  p-1 ,  Ada Lovelace\t, 12.5 , EUR \n").payments
    assert record == PaymentRecord(
        line=2, payment_id="p-1", recipient="Ada Lovelace", amount="12.50", currency="EUR"
    )


# --- decimals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "normalized"),
    [
        ("12.5", "USD", "12.50"),
        ("12", "EUR", "12.00"),
        ("007.10", "GBP", "7.10"),
        ("0.01", "CHF", "0.01"),
        ("1200", "JPY", "1200"),
        ("5", "KRW", "5"),
        ("1.5", "BHD", "1.500"),
        ("0.001", "KWD", "0.001"),
        ("999999999999999999.99", "USD", "999999999999999999.99"),
        ("0.1", "HUF", "0.10"),
    ],
)
def test_amounts_carry_exactly_the_currency_minor_units(
    amount: str, currency: str, normalized: str
) -> None:
    [record] = parse_text(f"{HEADER}p-1,Ada,{amount},{currency}\n").payments
    assert record.amount == normalized
    assert Decimal(record.amount) == Decimal(amount)


def test_currency_table_has_the_required_codes() -> None:
    required = {
        **dict.fromkeys(
            ["USD", "EUR", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "CAD"], 2
        ),
        **dict.fromkeys(["AUD", "NZD", "SGD", "HKD", "CNY", "INR", "BRL", "MXN", "ZAR"], 2),
        "JPY": 0,
        "KRW": 0,
        "BHD": 3,
        "KWD": 3,
    }
    assert {code: MINOR_UNITS[code] for code in required} == required
    assert all(re.fullmatch("[A-Z]{3}", code) for code in MINOR_UNITS)


def test_json_is_camel_case_with_amounts_as_strings() -> None:
    parsed = parse_text(HEADER + "p-1,Ada,12.5,EUR\n,Bob,1,EUR\n")
    document = json.loads(parsed.model_dump_json())
    assert document["payments"][0] == {
        "line": 2,
        "paymentId": "p-1",
        "recipient": "Ada",
        "amount": "12.50",
        "currency": "EUR",
    }
    assert document["rejected"][0]["paymentId"] is None
    assert document["totalLines"] == 2
    assert ParsedFile.model_validate_json(parsed.model_dump_json()) == parsed


def test_models_are_frozen() -> None:
    record = payment("1.00")
    with pytest.raises(ValidationError):
        record.amount = "2.00"


# --- the provider's decision ------------------------------------------------------------------


def test_provider_decision_is_deterministic() -> None:
    record = payment("12.50", recipient="Ada")
    first = provider_decision(record)
    assert provider_decision(payment("12.50", recipient="Ada")) == first
    digest = hashlib.sha256(b"p-1|Ada|12.50|USD").hexdigest()
    assert first.provider_reference == "PRV-" + digest[:12]
    assert first == ProviderAnswer(
        status="APPROVED", provider_reference=first.provider_reference, fee="0.43", message="ok"
    )
    assert provider_decision(payment("12.51")).provider_reference != first.provider_reference
    assert provider_decision(payment("12.50", "EUR")).provider_reference != (
        first.provider_reference
    )


@pytest.mark.parametrize(
    ("amount", "currency", "status", "message"),
    [
        ("10000.00", "USD", "APPROVED", "ok"),
        ("10000.01", "USD", "REJECTED", "amount over limit"),
        ("10000", "JPY", "APPROVED", "ok"),
        ("10001", "JPY", "REJECTED", "amount over limit"),
        ("10000.001", "BHD", "REJECTED", "amount over limit"),
    ],
)
def test_limit_is_in_major_units(amount: str, currency: str, status: str, message: str) -> None:
    answer = provider_decision(payment(amount, currency))
    assert (answer.status, answer.message) == (status, message)


@pytest.mark.parametrize("recipient", ["Blocked Ltd", "un-BLOCKED", "the blocked one", "BlOcKeD"])
def test_blocked_recipients_are_rejected(recipient: str) -> None:
    answer = provider_decision(payment("10.00", recipient=recipient))
    assert (answer.status, answer.message, answer.fee) == ("REJECTED", "recipient blocked", "0.00")


def test_amount_over_limit_wins_over_blocked_recipient() -> None:
    assert provider_decision(payment("20000.00", recipient="blocked")).message == (
        "amount over limit"
    )


@pytest.mark.parametrize(
    ("amount", "currency", "fee"),
    [
        ("100.00", "USD", "1.30"),
        ("0.50", "USD", "0.31"),  # 0.305: half-up, not half-even
        ("1.50", "EUR", "0.32"),  # 0.315
        ("75.50", "USD", "1.06"),  # 1.055
        ("10000.00", "GBP", "100.30"),
        ("0.01", "USD", "0.30"),
        ("50", "JPY", "1"),  # 0.5 rounds up
        ("49", "JPY", "1"),  # 0.49 rounds to 0, minimum 1
        ("1", "KRW", "1"),
        ("250", "JPY", "3"),  # 2.5: half-up, not half-even
        ("4500", "JPY", "45"),
        ("9999", "JPY", "100"),
        ("1.000", "BHD", "0.310"),
        ("0.050", "BHD", "0.301"),  # 0.3005
        ("250.125", "KWD", "2.801"),  # 2.80125
        ("9999.999", "KWD", "100.300"),  # 100.29999
    ],
)
def test_fee_rounding(amount: str, currency: str, fee: str) -> None:
    answer = provider_decision(payment(amount, currency))
    assert answer.status == "APPROVED"
    assert answer.fee == fee


@pytest.mark.parametrize(("currency", "fee"), [("USD", "0.00"), ("JPY", "0"), ("BHD", "0.000")])
def test_rejected_payments_have_a_zero_fee_in_minor_units(currency: str, fee: str) -> None:
    assert provider_decision(payment("20000", currency, recipient="x")).fee == fee


# --- output -----------------------------------------------------------------------------------


def test_output_lines_follow_input_order_with_every_status() -> None:
    parsed = parse_text(
        HEADER
        + "p-1,Ada,1.00,EUR\n"
        + "p-2,Bob,bad,EUR\n"
        + "p-3,Blocked Co,1.00,EUR\n"
        + "\n"
        + ",Nobody,1.00,EUR\n"
        + "p-5,Eve,1.00,EUR\n"
        + "p-1,Dup,1.00,EUR\n"
    )
    answers = {p.payment_id: provider_decision(p) for p in parsed.payments if p.payment_id != "p-5"}
    answers["not-in-file"] = provider_decision(payment("1.00", payment_id="not-in-file"))
    lines = output_lines(parsed, answers)
    assert len(lines) == parsed.total_lines == 6
    assert [(line.line, line.payment_id, line.status) for line in lines] == [
        (2, "p-1", "APPROVED"),
        (3, "p-2", "INVALID"),
        (4, "p-3", "REJECTED"),
        (6, None, "INVALID"),
        (7, "p-5", "NO_ANSWER"),
        (8, "p-1", "INVALID"),
    ]
    assert lines[0].fee == "0.31"
    assert lines[0].provider_reference == answers["p-1"].provider_reference
    assert lines[1] == OutputLine(
        line=3,
        payment_id="p-2",
        status="INVALID",
        provider_reference="",
        fee="",
        message="amount 'bad' is not a decimal number",
    )
    assert (lines[2].message, lines[2].fee) == ("recipient blocked", "0.00")
    assert (lines[4].provider_reference, lines[4].fee) == ("", "")
    assert lines[4].message == "no answer from the payment provider"
    assert lines[5].message == "duplicate id p-1 (first on line 2)"


def test_render_csv_quotes_and_round_trips() -> None:
    lines = [
        OutputLine(line=2, payment_id="p-1", status="APPROVED", fee="1.30", message="ok"),
        OutputLine(
            line=3,
            payment_id="p,2",
            status="INVALID",
            message='amount "x, y" is not\na decimal — número',
        ),
        OutputLine(line=4, payment_id="p-3", status="REJECTED", message="lone\rreturn"),
        OutputLine(line=5, payment_id=None, status="INVALID", message="empty id"),
    ]
    data = render_csv(lines)
    assert data.startswith(b"ID,Status,ProviderReference,Fee,Message\np-1,APPROVED,,1.30,ok\n")
    assert b"\r\n" not in data
    assert data.endswith(b"\n")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert rows == [
        ["ID", "Status", "ProviderReference", "Fee", "Message"],
        ["p-1", "APPROVED", "", "1.30", "ok"],
        ["p,2", "INVALID", "", "", 'amount "x, y" is not\na decimal — número'],
        ["p-3", "REJECTED", "", "", "lone\rreturn"],
        ["", "INVALID", "", "", "empty id"],
    ]


def test_render_empty_output_is_just_the_header() -> None:
    assert render_csv([]) == b"ID,Status,ProviderReference,Fee,Message\n"


@pytest.mark.parametrize(
    "recipient",
    ['Smith, "Jr", & Co', "Zoë Ñúñez 李小龍 🙂", "a\nb", 'say ""hi""', "=SUM(A1)"],
)
def test_input_quoting_round_trip(recipient: str) -> None:
    data = input_csv([("p-1", recipient, "1.00", "EUR")], lineterminator="\r\n")
    [record] = parse_csv(data).payments
    assert record.recipient == recipient


# --- properties -------------------------------------------------------------------------------

_cells = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20).filter(
    lambda s: s == s.strip()
)
_ids = st.from_regex(PAYMENT_ID, fullmatch=True)


@st.composite
def valid_rows(draw: st.DrawFn) -> tuple[str, str, str, str]:
    currency = draw(st.sampled_from(sorted(MINOR_UNITS)))
    minor = draw(st.integers(min_value=1, max_value=10**15))
    amount = str(Decimal(minor).scaleb(-MINOR_UNITS[currency]))
    return draw(_ids), draw(_cells), amount, currency


@given(
    rows=st.lists(valid_rows(), max_size=15, unique_by=lambda row: row[0]),
    dialect=st.sampled_from([("\r\n", False), ("\n", True)]),
)
def test_valid_rows_written_as_csv_parse_back_to_the_same_payments(
    rows: list[tuple[str, str, str, str]], dialect: tuple[str, bool]
) -> None:
    parsed = parse_csv(input_csv(rows, *dialect))
    assert parsed.rejected == []
    assert [(p.payment_id, p.recipient, p.amount, p.currency) for p in parsed.payments] == rows
    lines = [p.line for p in parsed.payments]
    assert lines == sorted(set(lines))
    assert all(line > 1 for line in lines)


@given(st.lists(st.text(max_size=40), max_size=15), st.booleans())
def test_output_has_one_line_per_data_row(body: list[str], answer_all: bool) -> None:
    parsed = parse_text(HEADER + "\n".join(body))
    assert parsed.total_lines == len(parsed.payments) + len(parsed.rejected)
    answers = {
        p.payment_id: provider_decision(p)
        for i, p in enumerate(parsed.payments)
        if answer_all or i % 2
    }
    lines = output_lines(parsed, answers)
    assert len(lines) == parsed.total_lines
    numbers = [line.line for line in lines]
    assert numbers == sorted(set(numbers))
    rendered = list(csv.reader(io.StringIO(render_csv(lines).decode(), newline="")))
    assert len(rendered) == len(lines) + 1


_statuses = st.sampled_from(["APPROVED", "REJECTED", "INVALID", "NO_ANSWER"])
_texts = st.text(st.characters(codec="utf-8"), max_size=20)


@given(
    st.lists(
        st.builds(
            OutputLine,
            line=st.integers(2, 10**6),
            payment_id=st.none() | _texts.filter(bool),
            status=_statuses,
            provider_reference=_texts,
            fee=_texts,
            message=_texts,
        ),
        max_size=10,
    )
)
def test_rendered_output_reads_back_cell_for_cell(lines: list[OutputLine]) -> None:
    data = render_csv(lines)
    assert data.endswith(b"\n")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert rows[1:] == [
        [inert(c) for c in (line.payment_id or "", line.status, line.provider_reference, line.fee)]
        + [inert(line.message)]
        for line in lines
    ]
    assert not any(cell.startswith(FORMULA_STARTS) for row in rows for cell in row)


def inert(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_fail_with_a_file_error(data: bytes) -> None:
    try:
        parsed = parse_csv(data)
    except NonRetryable as error:
        assert error.error_code in FILE_ERRORS
    else:
        assert parsed.total_lines == len(parsed.payments) + len(parsed.rejected)


@given(valid_rows(), st.sampled_from(["", "blocked ", "X"]))
def test_fee_always_has_the_currency_minor_units(
    row: tuple[str, str, str, str], prefix: str
) -> None:
    record = PaymentRecord(
        line=2, payment_id=row[0], recipient=prefix + row[1], amount=row[2], currency=row[3]
    )
    answer = provider_decision(record)
    assert answer == provider_decision(record)
    digits = MINOR_UNITS[record.currency]
    assert Decimal(answer.fee).as_tuple().exponent == -digits
    if answer.status == "APPROVED":
        assert Decimal(answer.fee) >= (1 if digits == 0 else Decimal("0.30"))
        assert Decimal(record.amount) <= 10_000


def test_rejected_line_model_allows_a_missing_id() -> None:
    assert (
        RejectedLine(line=3, payment_id=None, reason="empty id", raw=",a,1,EUR").payment_id is None
    )
