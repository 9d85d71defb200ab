"""A py-spy profile of the coordinator, sorted into the parts of a transition."""

from __future__ import annotations

from tpfctl.bench.cpu_shares import shares

LOOP = "Runner.run (asyncio/runners.py:118)"
SUBMIT = "control_plane.<locals>.submit (coordinator/api.py:144)"
PROFILE = [
    # An AWS request made while taking a submission is the bare loop's work too.
    f"{LOOP};{SUBMIT};AioBaseClient._make_api_call (aiobotocore/client.py:406) 60",
    f"{LOOP};{SUBMIT};Contract._check (tpf/contract.py:255) 10",
    f"{LOOP};RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py:522) 8",
    f"{LOOP};isolated (tpf/loops.py:76);ResultsConsumer.handle (coordinator/results.py:81) 7",
    f"{LOOP} 5",
    f"{LOOP};Batcher._run (tpf/queues/batching.py:87) 2",
    "_find_and_load (<frozen importlib._bootstrap>:1176) 40",
    "",
    "not a profile line",
]


def test_samples_go_to_the_first_part_their_stack_matches() -> None:
    found = shares(PROFILE)

    assert found["samples"] == 92 and found["startup_samples"] == 40
    assert found["shares"] == {
        "aws_requests": round(60 / 92, 4),
        "submissions": round(10 / 92, 4),
        "http_stack": round(8 / 92, 4),
        "results": round(7 / 92, 4),
        "event_loop": round(5 / 92, 4),
        "batching": round(2 / 92, 4),
    }


def test_the_top_functions_leave_out_aws_requests_and_line_numbers() -> None:
    top = shares(PROFILE, top=2)["top_functions"]

    assert top == [
        {"function": "Contract._check (tpf/contract.py)", "share": round(10 / 92, 4)},
        {
            "function": "RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py)",
            "share": round(8 / 92, 4),
        },
    ]


def test_an_empty_profile_has_no_shares() -> None:
    assert shares([]) == {"samples": 0, "startup_samples": 0, "shares": {}, "top_functions": []}
