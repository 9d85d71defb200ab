"""Releases: the descriptor that names one, the artifact ``tpf release build`` makes, and the
coordinator's way to read artifacts back.

A release descriptor, in TPF's form (REFERENCE section 4)::

    {"schemaVersion": 1, "pipelineId": "org.example.greeting",
     "contractVersion": "sha256:<hex>", "releaseVersion": "1.0.0",
     "artifacts": [{"artifactId", "kind", "uri", "digest": "sha256:<hex>",
                    "stepIds", "capabilities", "entryPoint"?}],
     "contract": {...}?}

``contract`` (ours, optional) is the canonical contract document, so a coordinator that has never
seen the pipeline can register it; its hash must equal ``contractVersion``. ``entryPoint`` (ours,
optional) is the ``module:attribute`` a worker loads. The first artifact is the *primary* one: the
code the release's workers run.

The artifact is a zip of the package holding the pipeline module, byte-for-byte reproducible
(sorted entries, fixed timestamps and modes, no bytecode), so building the same code twice gives
the same digest and the digest names the code.

The coordinator checks the primary artifact's digest once, when the release is registered,
through an :class:`ArtifactReader` (``file://`` from its own filesystem, ``s3://`` streamed from
S3); submissions never read artifacts.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import sys
import zipfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as ModelValidationError
from pydantic.alias_generators import to_camel

from tpf.contract import Contract
from tpf.errors import ConfigurationError, Conflict, ContractError, InvalidInput, TpfError
from tpf.settings import Settings
from tpf.wire import PROTOCOL

if TYPE_CHECKING:
    from tpf.substrate import Endpoints

DIGEST = r"^sha256:[0-9a-f]{64}$"
RELEASE_VERSION = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"
RESERVED_VERSIONS = frozenset({"active", "register"})
"""Words the admin API uses after ``/releases/``; a release of that name could not be addressed."""
ARTIFACT_KIND = "python-zip"
CAPABILITIES = ("transition-worker", f"tpf-protocol-{PROTOCOL}")
CHUNK = 1 << 20
MANIFEST = "tpf-artifact.json"
"""Inside each artifact: the pipeline id, contract version and entry point it was built for."""
# The earliest time a zip entry can carry; any fixed value makes builds reproducible.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o100644 << 16  # a regular file, rw-r--r--, in the entry's Unix attributes


class InvalidRelease(InvalidInput):
    """A descriptor or artifact that cannot be registered; the pointer names the field."""


class ArtifactUnavailable(TpfError):
    """An artifact's bytes cannot be read from its URI."""


class _Wire(BaseModel):
    # Descriptors come from other tools (TPF's own build among them): fields we don't know are
    # ignored rather than refused.
    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore"
    )


class ReleaseArtifact(_Wire):
    artifact_id: str = Field(min_length=1, max_length=200)
    kind: str = Field(min_length=1, max_length=64)
    uri: str = Field(min_length=1, max_length=2048)
    digest: str = Field(pattern=DIGEST)
    step_ids: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    entry_point: str | None = None


class ReleaseDescriptor(_Wire):
    schema_version: Literal[1] = 1
    pipeline_id: str = Field(min_length=1, max_length=200)
    contract_version: str = Field(pattern=DIGEST)
    release_version: str = Field(pattern=RELEASE_VERSION)
    artifacts: tuple[ReleaseArtifact, ...] = Field(min_length=1)
    contract: dict[str, Any] | None = None

    @field_validator("release_version")
    @classmethod
    def _addressable(cls, version: str) -> str:
        if version in RESERVED_VERSIONS:
            raise ValueError(f"{version!r} is reserved by the admin API")
        return version

    @model_validator(mode="after")
    def _distinct_artifacts(self) -> ReleaseDescriptor:
        if len({a.artifact_id for a in self.artifacts}) != len(self.artifacts):
            raise ValueError("artifact ids must be unique")
        return self

    @classmethod
    def parse(cls, data: Any) -> ReleaseDescriptor:
        """Validate a decoded descriptor; :class:`InvalidRelease` names the first bad field."""
        try:
            return cls.model_validate(data)
        except ModelValidationError as exc:
            first = exc.errors()[0]
            raise InvalidRelease(
                f"not a release descriptor: {first['msg']}", pointer=_pointer(first["loc"])
            ) from exc

    @property
    def primary(self) -> ReleaseArtifact:
        return self.artifacts[0]

    def checked_contract(self) -> Contract | None:
        """The included contract, once its pipeline and hash match the descriptor's."""
        if self.contract is None:
            return None
        try:
            contract = Contract.model_validate(self.contract)
        except ModelValidationError as exc:
            first = exc.errors()[0]
            raise InvalidRelease(
                f"not a usable contract: {first['msg']}",
                pointer="/contract" + _pointer(first["loc"]),
            ) from exc
        except ContractError as exc:
            raise InvalidRelease(str(exc), pointer="/contract") from exc
        if contract.pipeline_id != self.pipeline_id:
            raise InvalidRelease(
                f"the contract is of pipeline {contract.pipeline_id!r}, "
                f"the descriptor of {self.pipeline_id!r}",
                pointer="/contract/pipelineId",
            )
        if contract.version != self.contract_version:
            raise InvalidRelease(
                f"the included contract hashes to {contract.version}, "
                f"the descriptor says {self.contract_version}",
                pointer="/contractVersion",
            )
        return contract

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True, indent=2) + "\n"


def _pointer(loc: tuple[Any, ...]) -> str:
    return "".join(f"/{str(p).replace('~', '~0').replace('/', '~1')}" for p in loc)


def read_descriptor(path: Path) -> ReleaseDescriptor:
    """A descriptor file; artifact URIs without a scheme are paths relative to the file."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise InvalidRelease(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRelease(f"{path} is not JSON: {exc}") from exc
    descriptor = ReleaseDescriptor.parse(data)
    artifacts = tuple(
        a
        if "://" in a.uri
        else a.model_copy(update={"uri": (path.parent / a.uri).resolve().as_uri()})
        for a in descriptor.artifacts
    )
    return descriptor.model_copy(update={"artifacts": artifacts})


def write_descriptor(path: Path, descriptor: ReleaseDescriptor) -> None:
    _write_atomically(path, descriptor.to_json().encode())


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- reading artifacts (the coordinator's side) ---------------------------------------------------


class ArtifactReader(Protocol):
    """Port: the bytes of an artifact, in chunks, from its URI."""

    def read(self, uri: str) -> AsyncIterator[bytes]:
        """Raise :class:`ArtifactUnavailable` when the bytes cannot be read."""
        ...


async def artifact_digest(reader: ArtifactReader, uri: str) -> str:
    """``sha256:<hex>`` of the artifact at ``uri``, hashed as it streams in."""
    digest = hashlib.sha256()
    async for chunk in reader.read(uri):
        digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def file_path(uri: str) -> Path:
    """The absolute path a ``file://`` URI names."""
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        raise ArtifactUnavailable(f"{uri} is not a file:// URI of this machine")
    path = Path(unquote(parsed.path))
    if not path.is_absolute():
        raise ArtifactUnavailable(f"{uri} does not name an absolute path")
    return path


class FileArtifactReader:
    """``file://`` URIs, read from this process's filesystem, optionally only below ``root``."""

    def __init__(self, *, root: Path | None = None, chunk_size: int = CHUNK) -> None:
        self.root = root.resolve() if root is not None else None
        self.chunk_size = chunk_size

    async def read(self, uri: str) -> AsyncIterator[bytes]:
        path = file_path(uri)
        if self.root is not None and not path.resolve().is_relative_to(self.root):
            raise ArtifactUnavailable(f"{path} is outside {self.root}")
        try:
            file = await asyncio.to_thread(path.open, "rb")
        except OSError as exc:
            raise ArtifactUnavailable(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            while chunk := await asyncio.to_thread(file.read, self.chunk_size):
                yield chunk
        except OSError as exc:
            raise ArtifactUnavailable(f"cannot read {path}: {exc.strerror or exc}") from exc
        finally:
            file.close()


def s3_location(uri: str) -> tuple[str, str]:
    """(bucket, key) of an ``s3://bucket/key`` URI."""
    parsed = urlparse(uri)
    key = parsed.path.lstrip("/")
    if parsed.scheme != "s3" or not parsed.netloc or not key:
        raise ArtifactUnavailable(f"{uri} is not an s3://bucket/key URI")
    return parsed.netloc, key


class S3ArtifactReader:
    """``s3://bucket/key`` URIs, streamed from S3 through an aioboto3 client."""

    def __init__(self, s3: Any, *, chunk_size: int = CHUNK) -> None:
        self.s3 = s3
        self.chunk_size = chunk_size

    async def read(self, uri: str) -> AsyncIterator[bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = s3_location(uri)
        try:
            response = await self.s3.get_object(Bucket=bucket, Key=key)
            body = response["Body"]
            # Entered for its exit, which releases the connection; the chunks come from the
            # wrapper, since entering returns the bare HTTP response.
            async with body:
                async for chunk in body.iter_chunks(self.chunk_size):
                    yield chunk
        except ClientError as exc:
            error = exc.response.get("Error", {})
            reason = error.get("Message") or error.get("Code") or str(exc)
            raise ArtifactUnavailable(f"cannot read {uri}: {reason}") from exc
        except BotoCoreError as exc:
            raise ArtifactUnavailable(f"cannot read {uri}: {exc}") from exc


class InMemoryArtifactReader:
    """The fake: artifacts by URI, with every read recorded."""

    def __init__(self, blobs: Mapping[str, bytes] | None = None) -> None:
        self.blobs = dict(blobs or {})
        self.reads: list[str] = []

    async def read(self, uri: str) -> AsyncIterator[bytes]:
        self.reads.append(uri)
        if uri not in self.blobs:
            raise ArtifactUnavailable(f"no artifact at {uri}")
        yield self.blobs[uri]


class ArtifactReaders:
    """Each URI to the reader of its scheme."""

    def __init__(self, readers: Mapping[str, ArtifactReader]) -> None:
        self.readers = dict(readers)

    async def read(self, uri: str) -> AsyncIterator[bytes]:
        scheme = urlparse(uri).scheme
        reader = self.readers.get(scheme)
        if reader is None:
            known = ", ".join(f"{s}://" for s in sorted(self.readers))
            raise ArtifactUnavailable(f"cannot read {uri}: only {known} artifacts are readable")
        async for chunk in reader.read(uri):
            yield chunk


def artifact_readers(s3: Any | None = None, *, file_root: Path | None = None) -> ArtifactReaders:
    """What a coordinator reads: ``file://`` (below ``file_root`` if given) and, with an S3
    client, ``s3://``."""
    readers: dict[str, ArtifactReader] = {"file": FileArtifactReader(root=file_root)}
    if s3 is not None:
        readers["s3"] = S3ArtifactReader(s3)
    return ArtifactReaders(readers)


# -- building and uploading (the release author's side) --------------------------------------------


def release_file_stem(pipeline_id: str, version: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{pipeline_id}-{version}")


def build_release(pipeline_reference: str, version: str, out_dir: Path) -> tuple[Path, Path]:
    """Package the pipeline's code and describe it: ``(descriptor_path, artifact_path)``.

    ``pipeline_reference`` is ``module:attribute`` (``examples.greeting.v1:pipeline``). The zip
    holds every ``.py`` file of the package the module belongs to, plus the ``__init__.py`` of
    each enclosing package, so it imports exactly as the source tree does, and
    :data:`MANIFEST`.
    """
    # Imported here: the coordinator reads descriptors through this module, never pipeline code.
    from worker.role import load_pipeline

    if not re.match(RELEASE_VERSION, version) or version in RESERVED_VERSIONS:
        raise InvalidRelease(
            f"release version {version!r} must be 1..64 letters, digits and ._+- "
            "starting with a letter or digit"
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

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = release_file_stem(pipeline.id, version)
    artifact_path = (out_dir / f"{stem}.zip").resolve()
    data = zip_files(entries)
    _write_atomically(artifact_path, data)
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
    from botocore.exceptions import BotoCoreError, ClientError

    from tpf.substrate import sync_client

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
    from botocore.exceptions import ClientError

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


def _write_atomically(path: Path, data: bytes) -> None:
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staged.write_bytes(data)
    os.replace(staged, path)  # a reader never sees half a file
