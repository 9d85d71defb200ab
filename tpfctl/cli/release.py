"""``tpf release``: build a release artifact, register it with the coordinator, activate it.

``build`` runs locally: it imports the pipeline, zips its package reproducibly and writes the
descriptor next to the zip (``--upload`` also puts the zip in the stack's release bucket).
``register``, ``activate`` and ``list`` talk to the coordinator's admin API; the coordinator
reads the artifact itself (``file://`` on its own filesystem, ``s3://`` from the bucket) to check
its digest once, at registration.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tpf.errors import TpfError
from tpf.releases import ReleaseDescriptor, read_descriptor
from tpf.settings import Settings
from tpfctl.cli.common import Api, ApiCallFailed, out, print_json
from tpfctl.cli.tables import Column, Wide, build_table
from tpfctl.release_build import build_release, upload_artifact

app = typer.Typer(help="Build, register and activate releases.", no_args_is_help=True)

Tenant = Annotated[str, typer.Option(help="Tenant id (releases are per pipeline; TPF's path).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
PipelineId = Annotated[str, typer.Argument(help="Pipeline id, e.g. org.example.greeting.")]


@app.command()
def build(
    pipeline: Annotated[
        str,
        typer.Argument(
            help="The pipeline as module:attribute, e.g. examples.greeting.v1:pipeline."
        ),
    ],
    version: Annotated[str, typer.Option("--version", help="Release version, e.g. 1.0.0.")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Where the zip and the descriptor go.")
    ] = Path("dist"),
    upload: Annotated[
        bool, typer.Option(help="Also put the zip in the stack's release bucket.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Zip the pipeline's package (reproducibly) and write its release descriptor."""
    descriptor_path, artifact_path = build_release(pipeline, version, out_dir)
    descriptor = read_descriptor(descriptor_path)
    if upload:
        descriptor = upload_artifact(Settings(), descriptor_path)
    if as_json:
        print_json({"descriptorPath": str(descriptor_path), **_json(descriptor)})
        return
    primary = descriptor.primary
    out.print(f"built {descriptor.pipeline_id} {descriptor.release_version}")
    out.print(f"  artifact    {primary.uri}")
    out.print(f"  digest      {primary.digest}")
    out.print(f"  contract    {descriptor.contract_version}")
    out.print(f"  descriptor  {descriptor_path}")
    if not upload:
        out.print(f"  local file: {artifact_path.name} (--upload puts it in the release bucket)")


@app.command()
def register(
    descriptor_file: Annotated[Path, typer.Argument(help="A .release.json descriptor.")],
    tenant: Tenant = "default",
    as_json: Json = False,
) -> None:
    """Register the release a descriptor describes; the coordinator checks the artifact."""
    descriptor = read_descriptor(descriptor_file)
    route = f"{_pipeline(tenant, descriptor.pipeline_id)}/releases/register"
    what = f"release {descriptor.release_version} of {descriptor.pipeline_id}"
    record = _call("register", what, "POST", route, json=_json(descriptor))
    if as_json:
        print_json(record)
        return
    out.print(
        f"registered {what}: contract {short(record['contractVersion'])}, "
        f"artifact {short(record.get('primaryArtifactDigest'))}"
    )


@app.command()
def activate(
    pipeline_id: PipelineId,
    version: Annotated[str, typer.Argument(help="A registered release version.")],
    tenant: Tenant = "default",
    as_json: Json = False,
) -> None:
    """Make VERSION the active release: new submissions pin it; running executions keep theirs."""
    route = f"{_pipeline(tenant, pipeline_id)}/releases/{version}/activate"
    what = f"release {version} of {pipeline_id}"
    record = _call("activate", what, "POST", route)
    if as_json:
        print_json(record)
        return
    out.print(f"activated {what}")


@app.command()
def retire(
    pipeline_id: PipelineId,
    version: Annotated[str, typer.Argument(help="A release no longer needed.")],
    tenant: Tenant = "default",
    as_json: Json = False,
) -> None:
    """Delete the release's work queue, once it is not active and no execution pinned to it
    may run again (refused otherwise, naming some that may)."""
    route = f"{_pipeline(tenant, pipeline_id)}/releases/{version}/retire"
    what = f"release {version} of {pipeline_id}"
    done = _call("retire", what, "POST", route)
    if as_json:
        print_json(done)
        return
    out.print(f"retired {what} (its work queue is gone)")


@app.command("list")
def list_releases(
    pipeline_id: PipelineId, tenant: Tenant = "default", wide: Wide = False, as_json: Json = False
) -> None:
    """List the pipeline's releases, newest first; * marks the active one."""
    route = f"{_pipeline(tenant, pipeline_id)}/releases"
    records = list(reversed(_call("list", f"releases of {pipeline_id}", "GET", route)))
    if as_json:
        print_json(records)
        return
    out.print(release_table(f"{len(records)} releases of {pipeline_id}", records, wide=wide))


RELEASES = [
    Column("active", whole=True),
    Column("version", whole=True),
    Column("contract", whole=True),
    Column("registered"),
    Column("digest", whole=True, wide=True),
    Column("activated", wide=True),
]


def release_table(title: str, records: list[dict[str, Any]], *, wide: bool) -> Table:
    """Digests shortened to 12 characters, enough to tell releases apart."""
    rows = [
        [
            "*" if r.get("active") else "",
            r["releaseVersion"],
            short(r["contractVersion"]),
            when(r["registeredAtEpochMs"]),
            short(r.get("primaryArtifactDigest")),
            when(r["activatedAtEpochMs"]) if r.get("activatedAtEpochMs") else "",
        ]
        for r in records
    ]
    return build_table(title, RELEASES, rows, wide=wide)


def _call(verb: str, what: str, method: str, route: str, **kwargs: Any) -> Any:
    api = Api(Settings(), admin=True)
    try:
        return api.call(method, route, **kwargs)
    except ApiCallFailed as exc:
        raise TpfError(f"cannot {verb} {what}: {exc}") from exc


def _pipeline(tenant: str, pipeline_id: str) -> str:
    return f"/tpf/admin/tenants/{tenant}/pipelines/{pipeline_id}"


def _json(descriptor: ReleaseDescriptor) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(descriptor.to_json())
    return data


def short(digest: str | None) -> str:
    """``sha256:0123456789ab...`` as ``0123456789ab``: enough to tell releases apart."""
    if not digest:
        return ""
    return digest.removeprefix("sha256:")[:12]


def when(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
