"""Who a bearer token is: the API's two tokens, and tokens scoped to a set of tenants.

``TPF_TENANT_TOKENS`` maps a token to the tenants it may see and act on. Such a token is
accepted on the control-plane and admin routes of those tenants, and refused (403) on every
other tenant's routes and on routes whose effect spans tenants (releases, workers). Listing
the control-plane or admin token there narrows it to those tenants: the setting never widens a
token, and a token scoped to no tenant admits nothing (fail closed).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Grant:
    """What one presented token may do."""

    control: bool
    """May use the control-plane routes (search, status, inbox)."""
    admin: bool
    """May use the admin routes (re-drive, cancel, releases, workers)."""
    tenants: frozenset[str] | None
    """The tenants it sees; None for every tenant."""

    def admits(self, tenant_id: str) -> bool:
        return self.tenants is None or tenant_id in self.tenants

    @property
    def scoped(self) -> bool:
        return self.tenants is not None


class TokenScopes:
    def __init__(
        self,
        *,
        control_plane_token: str | None,
        admin_token: str | None,
        tenant_tokens: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self._control = control_plane_token
        self._admin = admin_token
        self._scoped = {
            token: frozenset(tenants) for token, tenants in (tenant_tokens or {}).items()
        }

    def grant(self, presented: str) -> Grant | None:
        """The grant of ``presented``, or None when it is no token of ours.

        Every known token is compared, in constant time each, so the time taken says nothing
        about which token came close.
        """
        given = presented.encode()
        control = _same(given, self._control)
        admin = _same(given, self._admin)
        tenants: frozenset[str] | None = None
        scoped = False
        for token, scope in self._scoped.items():
            if _same(given, token):
                scoped, tenants = True, scope
        if not (control or admin or scoped):
            return None
        if scoped:
            # A scoped token acts on its tenants on both route families.
            return Grant(control=True, admin=True, tenants=tenants)
        return Grant(control=control, admin=admin, tenants=None)


def _same(given: bytes, expected: str | None) -> bool:
    return bool(expected) and hmac.compare_digest(given, (expected or "").encode())
