"""Releases: the descriptor that names one, and the coordinator's way to read artifacts back.
(``tpf release build`` makes them: :mod:`tpfctl.release_build`.)

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

The coordinator checks the primary artifact's digest once, when the release is registered,
through an artifact reader (:mod:`tpf.artifacts`); submissions never read artifacts.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as ModelValidationError
from pydantic.alias_generators import to_camel

from tpf.contract import Contract
from tpf.errors import ContractError, InvalidInput
from tpf.wire import PROTOCOL

if TYPE_CHECKING:
    pass

DIGEST = r"^sha256:[0-9a-f]{64}$"
RELEASE_VERSION = r"^(?:[A-Za-z0-9][A-Za-z0-9._+-]{0,63}|sha256:[0-9a-f]{64})$"
"""A name such as ``1.0.0``, or TPF's default: the contract version, ``sha256:<64 hex>``."""
RESERVED_VERSIONS = frozenset({"active", "register"})
"""Words the admin API uses after ``/releases/``; a release of that name could not be addressed."""
ARTIFACT_KIND = "python-zip"
CAPABILITIES = ("transition-worker", f"tpf-protocol-{PROTOCOL}")
MANIFEST = "tpf-artifact.json"
"""Inside each artifact: the pipeline id, contract version and entry point it was built for."""
# The earliest time a zip entry can carry; any fixed value makes builds reproducible.


class InvalidRelease(InvalidInput):
    """A descriptor or artifact that cannot be registered; the pointer names the field."""


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

    @field_validator("uri")
    @classmethod
    def _plain_path_is_a_file(cls, uri: str) -> str:
        """TPF's descriptors name a local artifact by its absolute path, with no scheme."""
        return Path(uri).as_uri() if uri.startswith("/") else uri


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


ARTIFACT_CONTRACT = "META-INF/pipeline/pipeline-contract.json"
"""Where ``tpf release build`` puts the contract in an artifact, as TPF's release tooling reads
it: TPF's summary (``pipelineId``, ``contractVersion``, ``steps``) with ours in ``tpfContract``."""
MAX_ARTIFACT_CONTRACT = 4 << 20


def contract_in_artifact(descriptor: ReleaseDescriptor, archive: IO[bytes]) -> Contract:
    """The contract inside the primary artifact of a descriptor that includes none, once its
    pipeline and hash match the descriptor's; else :class:`InvalidRelease` at the artifact."""
    where = "/artifacts/0/uri"
    try:
        with zipfile.ZipFile(archive) as bundle:
            entry = bundle.getinfo(ARTIFACT_CONTRACT)
            if entry.file_size > MAX_ARTIFACT_CONTRACT:
                raise InvalidRelease(f"{ARTIFACT_CONTRACT} is over 4 MiB", pointer=where)
            document = json.loads(bundle.read(entry))
    except KeyError:
        raise InvalidRelease(
            f"the descriptor has no contract and the artifact no {ARTIFACT_CONTRACT}: include "
            "one, or register the pipeline first",
            pointer=where,
        ) from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise InvalidRelease(
            f"the artifact is not a zip with a readable {ARTIFACT_CONTRACT}: {exc}", pointer=where
        ) from exc
    ours = document.get("tpfContract") if isinstance(document, dict) else None
    if not isinstance(ours, dict):
        raise InvalidRelease(
            f"the artifact's {ARTIFACT_CONTRACT} has no 'tpfContract' (a JVM release's?): "
            "this coordinator runs releases built by 'tpf release build'",
            pointer=where,
        )
    try:
        contract = descriptor.model_copy(update={"contract": ours}).checked_contract()
    except InvalidRelease as exc:
        raise InvalidRelease(f"the artifact's contract: {exc}", pointer=where) from exc
    assert contract is not None
    return contract


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
    write_atomically(path, descriptor.to_json().encode())


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_atomically(path: Path, data: bytes) -> None:
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staged.write_bytes(data)
    os.replace(staged, path)  # a reader never sees half a file
