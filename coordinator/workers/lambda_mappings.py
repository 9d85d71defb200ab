"""Whether a Lambda worker consumes its queue: its event source mappings, over aioboto3."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError


class LambdaEventSourceMappings:
    """Over an aioboto3 ``lambda`` client. A function without mappings is not consuming."""

    CONSUMING = frozenset({"Enabled", "Enabling", "Updating"})

    def __init__(self, client: Any) -> None:
        self.client = client

    async def enabled(self, function_name: str) -> bool:
        request: dict[str, Any] = {"FunctionName": function_name}
        try:
            while True:
                response = await self.client.list_event_source_mappings(**request)
                mappings = response.get("EventSourceMappings", [])
                if any(m.get("State") in self.CONSUMING for m in mappings):
                    return True
                if not response.get("NextMarker"):
                    return False
                request["Marker"] = response["NextMarker"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return False
            raise
