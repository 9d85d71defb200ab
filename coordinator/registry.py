"""The registry: contracts, releases and activations, so a coordinator knows a pipeline by
its contract alone and pins each execution to a release.

Items share one table, keyed by pipeline::

    pk = pipeline#<pipelineId>   sk = contract#<contractVersion>      immutable contract JSON
                                 sk = release#<releaseVersion>        immutable release record
                                 sk = activation#<epochMs>#<release>  append-only activations

The active release is the newest activation. Contracts and releases never change once written,
so they are cached for the life of the process.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from tpf.contract import Contract
from tpf.errors import AlreadyExists, NotFound
from tpf.pipeline import Pipeline


class RegistryTable(Protocol):
    """Port: write-once items and newest-first prefix queries on one partition."""

    async def put_new(self, pk: str, sk: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Write unless present; return the existing body when present."""

    async def get(self, pk: str, sk: str) -> dict[str, Any] | None: ...

    async def newest(self, pk: str, prefix: str, limit: int) -> list[dict[str, Any]]: ...


class ReleaseRecord(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    pipeline_id: str
    contract_version: str
    release_version: str
    primary_artifact_id: str | None = None
    primary_artifact_digest: str | None = None
    registered_at_epoch_ms: int
    activated_at_epoch_ms: int | None = None

    def same_release(self, other: ReleaseRecord) -> bool:
        ignore = {"registered_at_epoch_ms", "activated_at_epoch_ms"}
        return self.model_dump(exclude=ignore) == other.model_dump(exclude=ignore)


def _pk(pipeline_id: str) -> str:
    return f"pipeline#{pipeline_id}"


class Registry:
    def __init__(self, table: RegistryTable, *, active_ttl_s: float = 2.0) -> None:
        self.table = table
        self.active_ttl_s = active_ttl_s
        """How long a replica trusts its view of the active release; activation takes effect
        on every replica within this time."""
        self._contracts: dict[tuple[str, str], Contract] = {}
        self._releases: dict[tuple[str, str], ReleaseRecord] = {}
        self._active: dict[str, tuple[float, ReleaseRecord | None]] = {}

    async def put_contract(self, contract: Contract) -> None:
        """Idempotent: the version is the hash of the content."""
        body = {"doc": contract.canonical_json().decode()}
        await self.table.put_new(_pk(contract.pipeline_id), f"contract#{contract.version}", body)
        self._contracts[(contract.pipeline_id, contract.version)] = contract

    async def contract(self, pipeline_id: str, contract_version: str) -> Contract:
        key = (pipeline_id, contract_version)
        if key not in self._contracts:
            item = await self.table.get(_pk(pipeline_id), f"contract#{contract_version}")
            if item is None:
                raise NotFound(f"no contract {contract_version} for pipeline {pipeline_id!r}")
            self._contracts[key] = Contract.from_json(item["doc"])
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
        current = ReleaseRecord.model_validate_json(existing["doc"])
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
            item = await self.table.get(_pk(pipeline_id), f"release#{release_version}")
            if item is None:
                raise NotFound(f"no release {release_version} of pipeline {pipeline_id!r}")
            self._releases[key] = ReleaseRecord.model_validate_json(item["doc"])
        return self._releases[key]

    async def activate(
        self, pipeline_id: str, release_version: str, *, now_ms: int
    ) -> ReleaseRecord:
        release = await self.release(pipeline_id, release_version)
        sk = f"activation#{now_ms:015d}#{release_version}"
        await self.table.put_new(_pk(pipeline_id), sk, {"release": release_version})
        self._active.pop(pipeline_id, None)
        return release.model_copy(update={"activated_at_epoch_ms": now_ms})

    async def active_release(self, pipeline_id: str) -> ReleaseRecord | None:
        cached = self._active.get(pipeline_id)
        if cached is not None and time.monotonic() - cached[0] < self.active_ttl_s:
            return cached[1]
        active = await self._newest_activation(pipeline_id)
        self._active[pipeline_id] = (time.monotonic(), active)
        return active

    async def _newest_activation(self, pipeline_id: str) -> ReleaseRecord | None:
        newest = await self.table.newest(_pk(pipeline_id), "activation#", 1)
        if not newest:
            return None
        activated_at = int(newest[0]["sk"].split("#")[1])
        release = await self.release(pipeline_id, newest[0]["release"])
        return release.model_copy(update={"activated_at_epoch_ms": activated_at})

    async def known_pipeline(self, pipeline_id: str) -> bool:
        return bool(await self.table.newest(_pk(pipeline_id), "contract#", 1))


class InMemoryRegistryTable:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    async def put_new(self, pk: str, sk: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if (pk, sk) in self.items:
            return self.items[(pk, sk)]
        self.items[(pk, sk)] = {"sk": sk, **body}
        return None

    async def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        return self.items.get((pk, sk))

    async def newest(self, pk: str, prefix: str, limit: int) -> list[dict[str, Any]]:
        keys = sorted(
            (k for k in self.items if k[0] == pk and k[1].startswith(prefix)), reverse=True
        )
        return [self.items[k] for k in keys[:limit]]


class DynamoRegistryTable:
    def __init__(self, client: Any, table_name: str) -> None:
        self.client, self.table_name = client, table_name

    async def put_new(self, pk: str, sk: str, body: dict[str, Any]) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        item = {"pk": {"S": pk}, "sk": {"S": sk}, **{k: {"S": str(v)} for k, v in body.items()}}
        try:
            await self.client.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                ReturnConsumedCapacity="TOTAL",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item") or {}
            return _plain(old) if old else await self.get(pk, sk)
        return None

    async def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        response = await self.client.get_item(
            TableName=self.table_name,
            Key={"pk": {"S": pk}, "sk": {"S": sk}},
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )
        item = response.get("Item")
        return _plain(item) if item else None

    async def newest(self, pk: str, prefix: str, limit: int) -> list[dict[str, Any]]:
        response = await self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": {"S": pk}, ":prefix": {"S": prefix}},
            ScanIndexForward=False,
            Limit=limit,
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )
        return [_plain(item) for item in response.get("Items", [])]


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v["S"] for k, v in item.items() if "S" in v}


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
