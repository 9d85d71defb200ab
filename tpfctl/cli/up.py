"""``tpf up``: the demo's stack, kept running in the foreground for exploring."""

from __future__ import annotations

import signal
import time
from typing import Annotated

import typer
from rich.panel import Panel

from tpf.settings import Settings
from tpfctl.cli.common import out
from tpfctl.fleet import Crash
from tpfctl.stack import StackSpec, owned_stack

app = typer.Typer()


@app.command()
def up(
    substrate: Annotated[
        str | None,
        typer.Option(help="embedded or localstack (default: TPF_SUBSTRATE, else embedded)."),
    ] = None,
    workers: Annotated[int, typer.Option(min=0, max=16)] = 2,
    provider_mock: Annotated[
        bool, typer.Option(help="Run the payment provider mock that answers CSV payments.")
    ] = True,
) -> None:
    """Start substrate, resources, a coordinator, workers and the payment provider mock, with
    the orders, restaurant approval and CSV payments pipelines ready; run until Ctrl-C."""
    settings = Settings()
    substrate = substrate or settings.substrate
    cp = settings.control_plane_token
    admin = settings.admin_token
    spec = StackSpec(
        substrate=substrate,
        stack=settings.stack,
        profile=settings.profile,
        workers=workers,
        api_port=settings.api_port,
        control_plane_token=cp.get_secret_value() if cp else None,
        admin_token=admin.get_secret_value() if admin else None,
        provider_mock=() if provider_mock else None,
    )
    with out.status("starting"), owned_stack(spec, on_crash=_report_crash) as stack:
        state_file = stack.write_state()
        exports = "\n".join(f"export {k}={v}" for k, v in stack.endpoints.as_env().items())
        generated = (
            f"\ncontrol-plane token: {stack.control_plane_token}"
            f"\nadmin token:         {stack.admin_token}"
            if cp is None or admin is None
            else "\ntokens: from TPF_CONTROL_PLANE_TOKEN / TPF_ADMIN_TOKEN"
        )
        out.print(
            Panel(
                f"API:        {stack.api_url}\n"
                f"console:    {stack.api_url}/console (sign in with one of the tokens)\n"
                f"substrate:  {substrate} ({stack.endpoints.dynamodb or 'AWS'}){generated}\n"
                f"state file: {state_file} (other `tpf` commands read it)\n"
                f"logs:       {stack.fleet.workdir}\n\n"
                f"point boto3 scripts or the AWS CLI here:\n{exports}\n"
                "export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test "
                f"AWS_DEFAULT_REGION={settings.region}\n\n"
                "try:  tpf submit org.example.orders -i "
                '\'{"orderId":"o-1","amountCents":1200,"customer":"Ada"}\'\n'
                "      tpf upload examples/csv_payments/sample.csv --wait\n"
                "      tpf approvals list\n"
                "Ctrl-C stops everything.",
                title=f"stack {settings.stack} is up",
            )
        )
        # A plain flag, polled: a handler that set a threading.Event would take its lock, and
        # deadlock if the signal arrived while this thread held it.
        signals: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda number, _: signals.append(number))
        while not signals:
            time.sleep(0.2)
        grace = stack.settings.timings.shutdown_grace.total_seconds() + 5
        out.print(f"stopping {len(stack.fleet.members)} processes (grace {grace:.0f}s)…")
        began = time.monotonic()
        ended = stack.fleet.stop_all(grace=grace)
        killed = [s.name for s in ended if s.killed]
        out.print(
            f"stopped in {time.monotonic() - began:.1f}s"
            + (f"; killed after the grace: {', '.join(killed)}" if killed else "")
        )
    state_file.unlink(missing_ok=True)
    state_file.with_suffix(".key").unlink(missing_ok=True)


def _report_crash(crash: Crash) -> None:
    out.print(f"[red]{crash.describe()}[/red]; its last lines:", highlight=False)
    out.print(crash.log_tail, highlight=False, markup=False)
