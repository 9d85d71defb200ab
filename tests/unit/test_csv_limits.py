"""What may reach the payments output and how much may come in: the payment-id alphabet, inert
cells, the provider's answers checked per row, and the caps on a file (bytes, rows, cells)."""

from __future__ import annotations

import csv
import io

import pytest

from examples.csv_payments.records import (
    FORMULA_STARTS,
    Limits,
    ProviderAnswer,
    output_lines,
    parse_csv,
    provider_decision,
    render_csv,
)
from tests.unit.test_csv_records import HEADER, VALID_ROW, parse_text
from tpf.errors import NonRetryable


@pytest.mark.parametrize(
    ("payment_id", "why"),
    [
        ('=HYPERLINK("http://x","y")', "is not 1-64 ASCII"),
        ("-2+3", "is not 1-64 ASCII"),
        ("@SUM(A1)", "is not 1-64 ASCII"),
        ("+1", "is not 1-64 ASCII"),
        ("p\u0430y-1", "is not 1-64 ASCII"),  # a Cyrillic a: looks like p-a-y
        ("\uff50-1", "is not 1-64 ASCII"),  # fullwidth p: NFKC would fold it, NFC does not
        ("x" * 65, "is not 1-64 ASCII"),
    ],
)
def test_ids_outside_the_alphabet_are_invalid_and_never_reach_the_output_live(
    payment_id: str, why: str
) -> None:
    parsed = parse_text(HEADER + f'"{payment_id.replace(chr(34), chr(34) * 2)}",Ada,1.00,EUR')
    [bad] = parsed.rejected
    assert why in bad.reason and parsed.payments == []
    [row] = list(csv.reader(io.StringIO(render_csv(output_lines(parsed, {})).decode())))[1:]
    assert row[1] == "INVALID"
    assert not any(cell.startswith(FORMULA_STARTS) for cell in row)


@pytest.mark.parametrize(
    ("fee", "reference", "problem"),
    [
        ("2.801", "PRV-1", "more than 2 decimals"),
        ("=1+1", "PRV-1", "not a non-negative decimal"),
        ("-0.30", "PRV-1", "not a non-negative decimal"),
        ("1e3", "PRV-1", "not a non-negative decimal"),
        ("1.30", "=cmd|' /C calc'!A0", "not a reference"),
        ("1.30", "", "not a reference"),
    ],
)
def test_an_unusable_provider_answer_makes_its_row_an_error(
    fee: str, reference: str, problem: str
) -> None:
    parsed = parse_text(HEADER + "p-1,Ada,12.50,EUR\np-2,Bob,1.00,EUR")
    good = provider_decision(parsed.payments[1])
    answers = {
        "p-1": ProviderAnswer(
            status="APPROVED", provider_reference=reference, fee=fee, message="ok"
        ),
        "p-2": good,
    }
    first, second = output_lines(parsed, answers)
    assert first.status == "ERROR" and problem in first.message
    assert (second.status, second.fee) == ("APPROVED", good.fee)
    rendered = render_csv([first, second]).decode()
    assert "\n=" not in rendered and ",=" not in rendered


# --- limits -----------------------------------------------------------------------------------


def test_a_file_over_the_byte_limit_is_refused_before_parsing() -> None:
    data = (HEADER + VALID_ROW + "\n").encode()
    with pytest.raises(NonRetryable) as refused:
        parse_csv(data, Limits(max_bytes=len(data) - 1))
    assert refused.value.error_code == "CSV_TOO_LARGE"
    assert parse_csv(data, Limits(max_bytes=len(data))).payments


def test_a_file_over_the_row_limit_is_refused() -> None:
    rows = "".join(f"p-{n},Ada,1.00,EUR\n" for n in range(3))
    with pytest.raises(NonRetryable) as refused:
        parse_csv((HEADER + rows).encode(), Limits(max_rows=2))
    assert refused.value.error_code == "CSV_TOO_MANY_ROWS"
    assert len(parse_csv((HEADER + rows).encode(), Limits(max_rows=3)).payments) == 3


def test_an_over_long_cell_makes_its_row_invalid_and_is_not_carried_whole() -> None:
    limits = Limits(max_cell=50)
    long_name = "A" * 5_000
    parsed = parse_csv(f"{HEADER}p-1,{long_name},1.00,EUR\np-2,Bob,2.00,EUR\n".encode(), limits)
    [bad] = parsed.rejected
    assert bad.reason == "Recipient is longer than 50 characters"
    assert len(bad.raw) <= 53 and [p.payment_id for p in parsed.payments] == ["p-2"]


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TPF_CSV_MAX_ROWS", "7")
    monkeypatch.setenv("TPF_CSV_MAX_CELL", "99")
    assert (Limits().max_rows, Limits().max_cell) == (7, 99)
