"""``tpf infra``: provision, remove and inspect the stack's tables, queues and buckets, print
them (with a Lambda worker and the roles) as a CloudFormation template, or print the environment
of a stack deployed from that template.

Settings come from ``TPF_*`` (and the standard AWS variables); endpoints from
``resolve_endpoints``, whose one-line error ``tpfctl.cli.main`` prints when none is known.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from infra.provision import ProvisionReport, describe_live, teardown
from infra.template import render, stack_template
from tpf.settings import Settings
from tpf.substrate import resolve_endpoints
from tpfctl.provisioning import bring_up

app = typer.Typer(
    help="Provision, remove and inspect the stack's tables, queues and buckets.",
    no_args_is_help=True,
)
out = Console(soft_wrap=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON to stdout and nothing else.")]

_ACTION_STYLES = {
    "created": "green",
    "updated": "yellow",
    "deleted": "red",
    "unchanged": "dim",
    "absent": "dim",
}


@app.command()
def up(as_json: JsonOption = False) -> None:
    """Create what is missing and repair what drifted; a second run changes nothing."""
    settings = Settings()
    update = bring_up(settings, endpoints=resolve_endpoints(settings))
    if as_json:
        _print_json(update.to_dict())
        return
    report = update.resources
    _print_report(report)
    for upgrade in update.upgrades:
        if upgrade.ran:
            out.print(f"upgraded: {upgrade.summary} ({upgrade.changed} changed) [{upgrade.id}]")
    if update.changed:
        out.print(f"stack {settings.stack} is up: {_counts(report)} in {report.elapsed:.1f}s")
    else:
        out.print(f"nothing to change: stack {settings.stack} is up to date")


@app.command()
def down(as_json: JsonOption = False) -> None:
    """Delete the stack's buckets (with their objects), queues and tables."""
    settings = Settings()
    report = teardown(settings, endpoints=resolve_endpoints(settings))
    if as_json:
        _print_json(report.to_dict())
        return
    _print_report(report)
    if report.changed:
        out.print(f"stack {settings.stack} removed: {_counts(report)} in {report.elapsed:.1f}s")
    else:
        out.print(f"nothing to remove: stack {settings.stack} does not exist")


@app.command("describe")
def describe_command(as_json: JsonOption = False) -> None:
    """Show what exists of the stack now."""
    settings = Settings()
    live = describe_live(settings, endpoints=resolve_endpoints(settings))
    if as_json:
        _print_json(live)
        return
    table = Table(title=f"stack {settings.stack} ({settings.region})")
    for column in ("kind", "name", "physical name", "state"):
        table.add_column(column)
    for kind, summarize in (
        ("table", _table_state),
        ("queue", _queue_state),
        ("bucket", _bucket_state),
    ):
        for name, resource in live[f"{kind}s"].items():
            state = summarize(resource) if resource["exists"] else "[dim]absent[/dim]"
            table.add_row(kind, name, resource["physical"], state)
    out.print(table)


@app.command()
def template(
    release: Annotated[
        str | None,
        typer.Option(help="Release version the worker function runs (TPF_RELEASE and a tag)."),
    ] = None,
    pipeline: Annotated[
        list[str] | None,
        typer.Option(
            help="Pipeline the worker hosts, as module:attribute (repeatable); the default is "
            "the three reference pipelines."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the template here instead of stdout."),
    ] = None,
) -> None:
    """Print the stack as an AWS CloudFormation template: tables, queues, buckets, the Lambda
    worker and least-privilege roles. Needs no substrate."""
    from tpf.loading import load_pipeline
    from tpfctl.stack import DEFAULT_PIPELINES

    settings = Settings()
    references = pipeline or list(DEFAULT_PIPELINES)
    hosted = {load_pipeline(r).id: r for r in references}
    document = stack_template(settings, pipelines=hosted, release=release)
    if output is None:
        print(render(document))
        return
    output.write_text(render(document) + "\n")
    out.print(
        f"wrote the template of stack {settings.stack} to {output}: "
        f"{len(document['Resources'])} resources"
    )


@app.command()
def env(
    stack: Annotated[str, typer.Option(help="Name of the deployed CloudFormation stack.")],
) -> None:
    """Print the environment of a coordinator, worker or `tpf` command for a stack deployed from
    the template, as export lines read from its outputs (eval them in a shell)."""
    from tpfctl.deployed import environment, export_lines, stack_outputs

    # A deployed stack is on AWS (or wherever AWS_ENDPOINT_URL says AWS is).
    settings = Settings().model_copy(update={"substrate": "aws"})
    print(export_lines(environment(stack_outputs(settings, stack))))


def _table_state(t: dict[str, Any]) -> str:
    indexes = ", ".join(f"{n} {i['status']}" for n, i in t["indexes"].items())
    ttl = f"ttl {t['ttl']['attribute']} {t['ttl']['status']}"
    return "; ".join(s for s in (t["status"], indexes, ttl) if s)


def _queue_state(q: dict[str, Any]) -> str:
    redrive = q["redrive_policy"]
    dlq = f"dlq after {redrive['maxReceiveCount']}" if redrive else ""
    m = q["messages"]
    counts = f"{m['visible']} visible, {m['in_flight']} in flight"
    return "; ".join(s for s in (f"visibility {q['visibility_timeout']}s", dlq, counts) if s)


def _bucket_state(b: dict[str, Any]) -> str:
    expiry = ", ".join(f"expire after {r['expiration_days']}d" for r in b["lifecycle"])
    events = ", ".join(
        f"events {n['filter'] or 'all'} -> {n['queue_arn'].rsplit(':', 1)[-1]}"
        for n in b["notification"]
    )
    return "; ".join(s for s in ("exists", expiry, events) if s)


def _print_report(report: ProvisionReport) -> None:
    table = Table(title=f"stack {report.stack}")
    for column in ("kind", "name", "physical name", "action"):
        table.add_column(column)
    for r in report.resources:
        style = _ACTION_STYLES.get(r.action, "")
        detail = f" ({', '.join(r.details)})" if r.details else ""
        table.add_row(r.kind, r.name, r.physical, f"[{style}]{r.action}{detail}[/{style}]")
    out.print(table)


def _counts(report: ProvisionReport) -> str:
    return ", ".join(f"{n} {action}" for action, n in sorted(report.counts().items()))


def _print_json(data: dict[str, Any]) -> None:
    # Plain print: rich would wrap long lines and colour the output.
    print(json.dumps(data, indent=2, sort_keys=True))
