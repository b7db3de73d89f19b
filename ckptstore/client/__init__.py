"""A client for a remote ckptstore server (httpx); uses the store's chunking and ids."""

from ckptstore.client.client import Client
from ckptstore.client.records import TenantUsage
from ckptstore.client.transport import RetryPolicy

__all__ = ["Client", "RetryPolicy", "TenantUsage"]
