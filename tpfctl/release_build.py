"""``tpf release build``: package a pipeline's code as a reproducible release artifact, describe
it, and put it in the stack's release bucket (the release author's side of :mod:`tpf.releases`).

The artifact is a zip of the package holding the pipeline module, byte-for-byte reproducible
(sorted entries, fixed timestamps and modes, no bytecode), so building the same code twice gives
the same digest and the digest names the code.
"""

from __future__ import annotations

import io
import json
import re
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from tpf.artifacts.file import file_path
from tpf.artifacts.port import ArtifactUnavailable
from tpf.contract import Contract
from tpf.errors import ConfigurationError, Conflict
from tpf.loading import load_pipeline
from tpf.releases import (
    ARTIFACT_CONTRACT,
    ARTIFACT_KIND,
    CAPABILITIES,
    MANIFEST,
    RELEASE_VERSION,
    RESERVED_VERSIONS,
    InvalidRelease,
    ReleaseArtifact,
    ReleaseDescriptor,
    read_descriptor,
    sha256_digest,
    write_atomically,
    write_descriptor,
)
from tpf.settings import Settings
from tpf.substrate import Endpoints, sync_client

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o100644 << 16  # a regular file, rw-r--r--, in the entry's Unix attributes


def release_file_stem(pipeline_id: str, version: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{pipeline_id}-{version}")


def build_release(pipeline_reference: str, version: str, out_dir: Path) -> tuple[Path, Path]:
    """Package the pipeline's code and describe it: ``(descriptor_path, artifact_path)``.

    ``pipeline_reference`` is ``module:attribute`` (``examples.greeting.v1:pipeline``). The zip
    holds every ``.py`` file of the package the module belongs to, plus the ``__init__.py`` of
    each enclosing package, so it imports exactly as the source tree does, and
    :data:`MANIFEST`.
    """
    if not re.match(RELEASE_VERSION, version) or version in RESERVED_VERSIONS:
        raise InvalidRelease(
            f"release version {version!r} must be 1..64 letters, digits and ._+- "
            "starting with a letter or digit, or a contract version (sha256:<64 hex>)"
        )
    module_name, _, attribute = pipeline_reference.partition(":")
    pipeline = load_pipeline(pipeline_reference)
    contract = Contract.from_pipeline(pipeline)
    package, files = _package_files(module_name)
    entry_point = f"{module_name}:{attribute or 'pipeline'}"
    # What the code runs, inside the code: two pipelines of one package make two artifacts,
    # and a worker holding only the zip knows its entry point and contract.
    manifest = {
        "pipelineId": pipeline.id,
        "contractVersion": contract.version,
        "entryPoint": entry_point,
    }
    entries = {name: path.read_bytes() for name, path in files}
    entries[MANIFEST] = json.dumps(manifest, sort_keys=True, indent=2).encode() + b"\n"
    entries[TPF_CONTRACT] = tpf_contract(contract)

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = release_file_stem(pipeline.id, version)
    artifact_path = (out_dir / f"{stem}.zip").resolve()
    data = zip_files(entries)
    write_atomically(artifact_path, data)
    descriptor = ReleaseDescriptor(
        pipeline_id=pipeline.id,
        contract_version=contract.version,
        release_version=version,
        artifacts=(
            ReleaseArtifact(
                artifact_id=package,
                kind=ARTIFACT_KIND,
                uri=artifact_path.as_uri(),
                digest=sha256_digest(data),
                step_ids=tuple(s.id for s in pipeline.steps),
                capabilities=CAPABILITIES,
                entry_point=entry_point,
            ),
        ),
        contract=json.loads(contract.canonical_json()),
    )
    descriptor_path = (out_dir / f"{stem}.release.json").resolve()
    write_descriptor(descriptor_path, descriptor)
    return descriptor_path, artifact_path


def _package_files(module_name: str) -> tuple[str, list[tuple[str, Path]]]:
    """(package name, [(name in the zip, file)]) for the package holding ``module_name``."""
    module = sys.modules[module_name]
    if module.__file__ is None:
        raise ConfigurationError(f"module {module_name!r} has no source file to package")
    source = Path(module.__file__).resolve()
    package = module.__package__ or ""
    if not package:  # a top-level module: itself alone
        return module_name, [(source.name, source)]
    package_dir = Path(next(iter(sys.modules[package].__path__))).resolve()
    depth = package.count(".") + 1
    root = package_dir.parents[depth - 1]
    files = [p for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts]
    enclosing = package_dir.parent
    for _ in range(depth - 1):
        if (enclosing / "__init__.py").is_file():
            files.append(enclosing / "__init__.py")
        enclosing = enclosing.parent
    return package, [(p.relative_to(root).as_posix(), p) for p in files]


TPF_CONTRACT = ARTIFACT_CONTRACT
"""Where TPF's release tooling reads an artifact's contract (its ``create-release``)."""


def tpf_contract(contract: Contract) -> bytes:
    """The contract as TPF's tooling reads it from an artifact: ``pipelineId``,
    ``contractVersion`` and the steps by ``authoredName``, with ours whole beside them."""
    document = {
        "schemaVersion": 1,
        "pipelineId": contract.pipeline_id,
        "contractVersion": contract.version,
        "steps": [
            {
                "index": step.index,
                "authoredName": step.id,
                "kind": step.kind.value,
                "cardinality": step.cardinality.value,
                "inputTypeId": step.input_type_id,
                "outputTypeId": step.output_type_id,
                "awaitTransport": step.await_.transport if step.await_ else None,
            }
            for step in contract.steps
        ],
        "tpfContract": json.loads(contract.canonical_json()),
    }
    return json.dumps(document, sort_keys=True, indent=2).encode() + b"\n"


def zip_files(entries: Mapping[str, bytes]) -> bytes:
    """A zip whose bytes depend only on the names and contents of ``entries``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, whatever the building machine is
            info.external_attr = _FILE_MODE
            archive.writestr(info, entries[name], compresslevel=9)
    return buffer.getvalue()


def upload_artifact(
    settings: Settings, descriptor_path: Path, *, endpoints: Endpoints | None = None
) -> ReleaseDescriptor:
    """Put each ``file://`` artifact in the stack's release bucket under
    ``<pipelineId>/<version>/<file>`` and rewrite its URI to ``s3://bucket/key`` in the file."""
    descriptor = read_descriptor(descriptor_path)
    bucket = settings.resource("releases")
    s3 = sync_client(settings, "s3", endpoints=endpoints)
    artifacts = []
    for i, artifact in enumerate(descriptor.artifacts):
        if urlparse(artifact.uri).scheme != "file":
            artifacts.append(artifact)
            continue
        try:
            path = file_path(artifact.uri)
            data = path.read_bytes()
        except (ArtifactUnavailable, OSError) as exc:
            raise InvalidRelease(str(exc), pointer=f"/artifacts/{i}/uri") from exc
        if sha256_digest(data) != artifact.digest:
            raise InvalidRelease(
                f"{path} changed since {descriptor_path.name} was written: build it again",
                pointer=f"/artifacts/{i}/digest",
            )
        key = f"{descriptor.pipeline_id}/{descriptor.release_version}/{path.name}"
        try:
            _put_once(s3, bucket, key, data)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise ConfigurationError(
                f"cannot upload to s3://{bucket}/{key}: {error.get('Message') or error.get('Code')}"
            ) from exc
        except BotoCoreError as exc:
            raise ConfigurationError(f"cannot upload to s3://{bucket}/{key}: {exc}") from exc
        artifacts.append(artifact.model_copy(update={"uri": f"s3://{bucket}/{key}"}))
    uploaded = descriptor.model_copy(update={"artifacts": tuple(artifacts)})
    write_descriptor(descriptor_path, uploaded)
    return uploaded


def _put_once(s3: Any, bucket: str, key: str, data: bytes) -> None:
    """Write the object unless it exists; an existing object must hold the same bytes.

    A registered release names its artifact by URI and digest: overwriting the object with
    another build of the same version would leave every worker of that release unable to load it.
    """
    try:
        s3.put_object(
            Bucket=bucket, Key=key, Body=data, ContentType="application/zip", IfNoneMatch="*"
        )
        return
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "PreconditionFailed":
            raise
    existing = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if sha256_digest(existing) != sha256_digest(data):
        raise Conflict(
            f"s3://{bucket}/{key} already holds another build of this release version; "
            "build under a new version",
            code="RELEASE_EXISTS",
        )
