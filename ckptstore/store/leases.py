"""LeaseKeeper: keeps one holder's leases alive while its ingest or upload runs."""

from __future__ import annotations

from ckptstore.store.context import StoreContext


class LeaseKeeper:
    """Renews every lease of ``holder`` once a third of the lease TTL has passed."""

    def __init__(self, ctx: StoreContext, holder: str) -> None:
        self._ctx = ctx
        self.holder = holder
        self._renewed_at = ctx.clock()

    def expires_at(self) -> float:
        """The expiry for a lease taken now; renews older leases first if they need it."""
        now = self._ctx.clock()
        ttl = self._ctx.config.lease_ttl_s
        if now - self._renewed_at > ttl / 3:
            self._ctx.catalog.renew_leases(self.holder, now + ttl)
            self._renewed_at = now
        return now + ttl

    def lease_existing(self, block_ids: list[bytes]) -> set[bytes]:
        """The subset of ``block_ids`` the store has, leased to this holder."""
        return self._ctx.catalog.lease_existing(block_ids, self.holder, self.expires_at())
