"""The registry: contracts, releases and activations, so a coordinator knows a pipeline by
its contract alone and pins each execution to a release.

Items share one table, keyed by pipeline::

    pk = pipeline#<pipelineId>   sk = contract#<contractVersion>      immutable contract JSON
                                 sk = release#<releaseVersion>        immutable release record
                                 sk = activation#<epochMs>#<release>  the default activations
          sk = tenant#<tenantId>#activation#<epochMs>#<release>       one tenant's activations

A tenant's active release is its own newest activation, else the newest default one: the
default serves every tenant that activated nothing (TPF's clients submit for tenants that never
registered a release), and a tenant's own activation overrides it for that tenant alone.
Activating for tenant ``default`` is activating the default. Releases are per pipeline for
every tenant (a version names the same code everywhere), and so are their work queues.

Contracts and releases never change once written, so they are cached for the life of the
process. Every read is a GetItem or a Query on the pipeline's partition; nothing scans.

A release registered from a descriptor (:meth:`Registry.register_descriptor`) has its primary
artifact's digest checked once, there, by reading the artifact through an
:class:`~tpf.releases.ArtifactReader`. Submissions, retries and activations trust the record.
"""

from __future__ import annotations

import time
from typing import IO, Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from tpf.artifacts.port import ArtifactReader, ArtifactUnavailable, spooled_artifact
from tpf.contract import Contract
from tpf.errors import AlreadyExists, NotFound
from tpf.pipeline import Pipeline
from tpf.registry.port import RegistryTable
from tpf.releases import (
    InvalidRelease,
    ReleaseArtifact,
    ReleaseDescriptor,
    contract_in_artifact,
)
from tpf.shared_calls import SharedCalls

DEFAULT_TENANT = "default"


class ReleaseRecord(BaseModel):
    """A registered release; camelCase on the wire and in the table."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    pipeline_id: str
    contract_version: str
    release_version: str
    primary_artifact_id: str | None = None
    primary_artifact_digest: str | None = None
    registered_at_epoch_ms: int
    activated_at_epoch_ms: int | None = None
    artifacts: tuple[ReleaseArtifact, ...] = ()
    """As the descriptor listed them; empty for releases registered from code (demo, tests)."""

    def same_release(self, other: ReleaseRecord) -> bool:
        """Same content: times differ between attempts, and where an artifact is kept (its URI)
        may change while its digest stays; everything else must be equal."""
        return self._content() == other._content()

    def _content(self) -> dict[str, Any]:
        data = self.model_dump(exclude={"registered_at_epoch_ms", "activated_at_epoch_ms"})
        for artifact in data["artifacts"]:
            artifact.pop("uri")
        return data

    @classmethod
    def of(cls, descriptor: ReleaseDescriptor, *, now_ms: int) -> ReleaseRecord:
        return cls(
            pipeline_id=descriptor.pipeline_id,
            contract_version=descriptor.contract_version,
            release_version=descriptor.release_version,
            primary_artifact_id=descriptor.primary.artifact_id,
            primary_artifact_digest=descriptor.primary.digest,
            registered_at_epoch_ms=now_ms,
            artifacts=descriptor.artifacts,
        )


class Activation(BaseModel):
    """One activation event: from then on, submissions pin this release."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    pipeline_id: str
    release_version: str
    activated_at_epoch_ms: int

    tenant_id: str = DEFAULT_TENANT
    """``default``: the activation every tenant without one of its own follows."""

    @classmethod
    def from_item(cls, pipeline_id: str, item: dict[str, Any]) -> Activation:
        # sk = [tenant#<tenantId>#]activation#<epochMs, 15 digits>#<releaseVersion>
        tenant, _, rest = item["sk"].rpartition("activation#")
        at, _, version = rest.partition("#")
        return cls(
            pipeline_id=pipeline_id,
            release_version=item.get("release", version),
            activated_at_epoch_ms=int(at),
            tenant_id=tenant.removeprefix("tenant#").removesuffix("#") or DEFAULT_TENANT,
        )


def _pk(pipeline_id: str) -> str:
    return f"pipeline#{pipeline_id}"


def _activations(tenant_id: str | None) -> str:
    """The sort-key prefix of the activations of ``tenant_id`` (None: the default's)."""
    if tenant_id is None or tenant_id == DEFAULT_TENANT:
        return "activation#"
    return f"tenant#{tenant_id}#activation#"


class Registry:
    def __init__(self, table: RegistryTable, *, active_ttl_s: float = 2.0) -> None:
        self.table = table
        self.active_ttl_s = active_ttl_s
        """How long a replica trusts its view of the active release; activation takes effect
        on every replica within this time."""
        self._contracts: dict[tuple[str, str], Contract] = {}
        self._releases: dict[tuple[str, str], ReleaseRecord] = {}
        self._active: dict[tuple[str, str | None], tuple[float, ReleaseRecord | None]] = {}
        # A burst of submits meeting a cold or expired entry makes one read, not one each.
        self._reads: SharedCalls[tuple[str, str, str], Any] = SharedCalls()
        self._active_reads: SharedCalls[tuple[str, str | None], ReleaseRecord | None] = (
            SharedCalls()
        )

    async def put_contract(self, contract: Contract) -> None:
        """Idempotent: the version is the hash of the content."""
        body = {"doc": contract.canonical_json().decode()}
        await self.table.put_new(_pk(contract.pipeline_id), f"contract#{contract.version}", body)
        self._contracts[(contract.pipeline_id, contract.version)] = contract

    async def contract(self, pipeline_id: str, contract_version: str) -> Contract:
        key = (pipeline_id, contract_version)
        if key not in self._contracts:  # immutable once stored

            async def load() -> Contract:
                return Contract.from_json(
                    await self._doc(pipeline_id, "contract", contract_version)
                )

            self._contracts[key] = await self._reads.call(("contract", *key), load)
        return self._contracts[key]

    async def register_release(self, release: ReleaseRecord) -> ReleaseRecord:
        """Immutable: the same version with other content is refused."""
        await self.contract(release.pipeline_id, release.contract_version)
        body = {"doc": release.model_dump_json(by_alias=True)}
        existing = await self.table.put_new(
            _pk(release.pipeline_id), f"release#{release.release_version}", body
        )
        if existing is None:
            return release
        return self._same_or_refused(ReleaseRecord.model_validate_json(existing["doc"]), release)

    async def register_descriptor(
        self, descriptor: ReleaseDescriptor, artifacts: ArtifactReader, *, now_ms: int
    ) -> ReleaseRecord:
        """Register a release from its descriptor; the primary artifact is read and its digest
        checked here, once.

        The contract comes with the descriptor (its hash must be ``contractVersion``), is
        registered already, or is read from the artifact (``tpf.releases.ARTIFACT_CONTRACT``).
        Registering the same release again returns the stored record without reading the
        artifact; the same version with other content is :class:`AlreadyExists`.
        Anything wrong with the descriptor or the artifact is :class:`InvalidRelease`.
        """
        contract = descriptor.checked_contract()
        from_artifact = contract is None and not await self._has_contract(descriptor)
        release = ReleaseRecord.of(descriptor, now_ms=now_ms)
        try:
            current = await self.release(descriptor.pipeline_id, descriptor.release_version)
        except NotFound:
            current = None
        if current is not None:
            return self._same_or_refused(current, release)
        actual, bytes_ = await self._read_primary(descriptor, artifacts)
        with bytes_:
            if actual != descriptor.primary.digest:
                raise InvalidRelease(
                    f"artifact {descriptor.primary.artifact_id!r} at {descriptor.primary.uri} has "
                    f"digest {actual}, the descriptor says {descriptor.primary.digest}",
                    pointer="/artifacts/0/digest",
                )
            if from_artifact:
                contract = contract_in_artifact(descriptor, bytes_)
        # Only now: a refused release leaves no contract behind to make its pipeline "known".
        if contract is not None:
            await self.put_contract(contract)
        return await self.register_release(release)

    async def _has_contract(self, descriptor: ReleaseDescriptor) -> bool:
        try:
            await self.contract(descriptor.pipeline_id, descriptor.contract_version)
        except NotFound:
            return False
        return True

    @staticmethod
    async def _read_primary(
        descriptor: ReleaseDescriptor, artifacts: ArtifactReader
    ) -> tuple[str, IO[bytes]]:
        primary = descriptor.primary
        try:
            return await spooled_artifact(artifacts, primary.uri)
        except ArtifactUnavailable as exc:
            raise InvalidRelease(
                f"artifact {primary.artifact_id!r} is unreadable: {exc}", pointer="/artifacts/0/uri"
            ) from exc

    @staticmethod
    def _same_or_refused(current: ReleaseRecord, release: ReleaseRecord) -> ReleaseRecord:
        if not current.same_release(release):
            raise AlreadyExists(
                f"release {release.release_version} of {release.pipeline_id!r} is registered "
                "with other content",
                current=current,
            )
        return current

    async def release(self, pipeline_id: str, release_version: str) -> ReleaseRecord:
        key = (pipeline_id, release_version)
        if key not in self._releases:  # immutable once registered

            async def load() -> ReleaseRecord:
                doc = await self._doc(pipeline_id, "release", release_version)
                return ReleaseRecord.model_validate_json(doc)

            self._releases[key] = await self._reads.call(("release", *key), load)
        return self._releases[key]

    async def _doc(self, pipeline_id: str, kind: str, version: str) -> str:
        """The stored document of a pipeline's contract or release; NotFound when absent."""
        item = await self.table.get(_pk(pipeline_id), f"{kind}#{version}")
        if item is None:
            raise NotFound(f"no {kind} {version} of pipeline {pipeline_id!r}")
        return str(item["doc"])

    async def activate(
        self, pipeline_id: str, release_version: str, *, now_ms: int, tenant_id: str | None = None
    ) -> ReleaseRecord:
        """Activate for ``tenant_id`` alone, or (None, ``default``) for every tenant without an
        activation of its own."""
        release = await self.release(pipeline_id, release_version)
        sk = f"{_activations(tenant_id)}{now_ms:015d}#{release_version}"
        await self.table.put_new(_pk(pipeline_id), sk, {"release": release_version})
        for key in [k for k in self._active if k[0] == pipeline_id]:
            del self._active[key]
        return release.model_copy(update={"activated_at_epoch_ms": now_ms})

    async def active_release(
        self, pipeline_id: str, tenant_id: str | None = None
    ) -> ReleaseRecord | None:
        """The release ``tenant_id``'s submissions pin: its own, else the default."""
        key = (pipeline_id, None if tenant_id == DEFAULT_TENANT else tenant_id)
        cached = self._active.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.active_ttl_s:
            return cached[1]
        return await self._active_reads.call(key, lambda: self._read_active(*key))

    async def _read_active(self, pipeline_id: str, tenant_id: str | None) -> ReleaseRecord | None:
        key = (pipeline_id, tenant_id)
        newest = await self.activations(pipeline_id, limit=1, tenant_id=key[1])
        if not newest and key[1] is not None:
            newest = await self.activations(pipeline_id, limit=1)
        active = None
        if newest:
            release = await self.release(pipeline_id, newest[0].release_version)
            active = release.model_copy(
                update={"activated_at_epoch_ms": newest[0].activated_at_epoch_ms}
            )
        self._active[key] = (time.monotonic(), active)
        return active

    async def activations(
        self, pipeline_id: str, *, limit: int = 100, tenant_id: str | None = None
    ) -> list[Activation]:
        """Activation events of ``tenant_id`` (None: the default ones), newest first."""
        items = await self.table.newest(_pk(pipeline_id), _activations(tenant_id), limit)
        return [Activation.from_item(pipeline_id, item) for item in items]

    async def active_anywhere(self, pipeline_id: str) -> set[str]:
        """The release versions active for some tenant, or by default (a Query of the
        pipeline's activations: for admin actions such as retirement, not for submissions)."""
        active = {a.release_version for a in await self.activations(pipeline_id, limit=1)}
        newest: dict[str, Activation] = {}
        for item in await self.table.query(_pk(pipeline_id), "tenant#"):
            activation = Activation.from_item(pipeline_id, item)
            seen = newest.get(activation.tenant_id)
            if seen is None or activation.activated_at_epoch_ms > seen.activated_at_epoch_ms:
                newest[activation.tenant_id] = activation
        return active | {a.release_version for a in newest.values()}

    async def releases(self, pipeline_id: str, tenant_id: str | None = None) -> list[ReleaseRecord]:
        """Every release of the pipeline, newest registration first; the one active for
        ``tenant_id`` carries ``activated_at_epoch_ms`` (when it was last activated)."""
        items = await self.table.query(_pk(pipeline_id), "release#")
        records = [ReleaseRecord.model_validate_json(item["doc"]) for item in items]
        records.sort(key=lambda r: (r.registered_at_epoch_ms, r.release_version), reverse=True)
        active = await self.active_release(pipeline_id, tenant_id)
        if active is None:
            return records
        return [active if r.release_version == active.release_version else r for r in records]

    async def known_pipeline(self, pipeline_id: str) -> bool:
        return bool(await self.table.newest(_pk(pipeline_id), "contract#", 1))


def release_for(contract: Contract, release_version: str, *, now_ms: int) -> ReleaseRecord:
    """A release record for code the coordinator was handed directly (demo, tests)."""
    return ReleaseRecord(
        pipeline_id=contract.pipeline_id,
        contract_version=contract.version,
        release_version=release_version,
        registered_at_epoch_ms=now_ms,
    )


async def register_pipeline(
    registry: Registry, pipeline: Pipeline, release_version: str, *, now_ms: int
) -> Contract:
    """Register a pipeline's contract and a release of it, then activate that release."""
    contract = Contract.from_pipeline(pipeline)
    await registry.put_contract(contract)
    await registry.register_release(release_for(contract, release_version, now_ms=now_ms))
    await registry.activate(pipeline.id, release_version, now_ms=now_ms)
    return contract
