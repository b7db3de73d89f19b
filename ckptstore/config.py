"""The one home of settings: the server's, read from environment variables."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from ckptstore.store.blockstore.durable import durable_write

SIGNING_KEYS_FILE = "signing-keys"


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path = Path("./data")
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None  # base of signed URLs; default http://host:port
    signing_keys: tuple[str, ...] = field(default_factory=tuple)  # newest last
    url_ttl_s: int = 3600
    gc_interval_s: float = 600.0
    gc_after_delete_s: float = 5.0
    max_block_batch_bytes: int = 64 * 1024 * 1024
    # JSON bodies are parsed whole; block-id lists of a checkpoint of a million blocks fit
    max_json_body_bytes: int = 96 * 1024 * 1024
    min_free_bytes: int = 64 * 1024 * 1024  # /healthz answers 507 below this much free disk
    anonymous_tenant: str | None = None  # requests without a key act as this tenant (dev only)
    delta_max_depth: int = 8  # StoreConfig.delta_max_depth: ratio against restore speed

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @classmethod
    def from_env(cls, **overrides: object) -> ServerSettings:
        """Settings from ``CKPTSTORE_*`` variables; keyword arguments win."""
        env = os.environ
        values: dict[str, object] = {
            "data_dir": Path(env.get("CKPTSTORE_DATA", "./data")),
            "host": env.get("CKPTSTORE_HOST", "127.0.0.1"),
            "port": int(env.get("CKPTSTORE_PORT", "8000")),
            "public_url": env.get("CKPTSTORE_PUBLIC_URL") or None,
            "signing_keys": tuple(k for k in env.get("CKPTSTORE_SIGNING_KEYS", "").split(",") if k),
            "anonymous_tenant": env.get("CKPTSTORE_ANONYMOUS_TENANT") or None,
        }
        depth = env.get("CKPTSTORE_DELTA_MAX_DEPTH")
        if depth is not None:
            if not depth.isdigit():
                raise ValueError(f"CKPTSTORE_DELTA_MAX_DEPTH={depth!r}: use a whole number >= 0")
            values["delta_max_depth"] = int(depth)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def resolved_signing_keys(self) -> tuple[str, ...]:
        """The configured keys, or those in ``<data>/signing-keys`` (made on first use).

        The file holds one key per line, newest last: add a line to rotate,
        remove the oldest once every URL it signed has expired.
        """
        if self.signing_keys:
            return self.signing_keys
        path = self.data_dir / SIGNING_KEYS_FILE
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                durable_write(path, (secrets.token_urlsafe(32) + "\n").encode())
                path.chmod(0o600)
            except FileExistsError:
                pass  # another process made it first
        keys = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
        if not keys:
            raise ValueError(f"{path} holds no signing key")
        return keys
