"""``tpf provider-mock``: a payment provider answering await requests, until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from tpf.errors import ConfigurationError
from tpf.settings import Settings
from tpfctl.cli.common import run_role

app = typer.Typer()


@app.command("provider-mock")
def provider_mock(
    delay: Annotated[
        float, typer.Option(min=0.0, help="Seconds between receiving a request and answering.")
    ] = 0.0,
    drop_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Fraction of requests never answered.")
    ] = 0.0,
    duplicate_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Fraction of requests answered twice.")
    ] = 0.0,
    rate: Annotated[
        float, typer.Option(min=0.001, help="At most this many answers per second.")
    ] = 200.0,
    seed: Annotated[
        int | None, typer.Option(help="Repeatable drop/duplicate choices per interaction.")
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            help="Sign answers with this provider key (a secret reference: env:, file: or "
            "secretsmanager:), as the coordinator's TPF_PROVIDER_KEYS expects."
        ),
    ] = None,
) -> None:
    """Answer payment await requests on the await-requests queue, like a payment provider."""
    from tpf.queues import SqsQueue
    from tpf.signing import Signer
    from tpf.substrate import open_clients
    from tpfctl.provider_mock import MockBehaviour, ProviderMock, load_default_decide

    settings = Settings()
    timings = settings.timings
    if delay >= timings.visibility_timeout.total_seconds():
        raise ConfigurationError(
            f"--delay {delay} must stay under the queue visibility timeout "
            f"({timings.visibility_timeout.total_seconds():g}s), or requests are answered twice"
        )
    behaviour = MockBehaviour(
        delay_s=delay,
        drop_rate=drop_rate,
        duplicate_rate=duplicate_rate,
        per_second=rate,
        seed=seed,
    )
    decide = load_default_decide()  # fail now, not on every request
    signer = Signer.from_references(key, settings=settings) if key else None

    async def main(stop: asyncio.Event) -> None:
        async with open_clients(settings) as aws:
            mock = ProviderMock(
                requests=await SqsQueue.open(aws.sqs, settings.resource("await-requests")),
                completions=await SqsQueue.open(aws.sqs, settings.resource("await-completions")),
                behaviour=behaviour,
                decide=decide,
                wait_s=int(timings.long_poll.total_seconds()),
                grace_s=timings.shutdown_grace.total_seconds(),
                signer=signer,
            )
            await mock.run(stop)

    run_role("provider-mock", main)
