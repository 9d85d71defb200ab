"""What provisioning did to one resource."""

from __future__ import annotations

from typing import Literal

Action = Literal["created", "updated", "unchanged", "deleted", "absent"]
