"""A client for a remote ckptstore server (httpx); uses the store's chunking and ids."""

from ckptstore.client.client import Client

__all__ = ["Client"]
