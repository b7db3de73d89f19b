"""The one home of settings: the server's, read from ``CKPTSTORE_*`` environment
variables by pydantic-settings (validated, one error naming each bad variable)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ckptstore.store.blockstore.durable import durable_write
from ckptstore.store.context import StoreConfig

SIGNING_KEYS_FILE = "signing-keys"


def _comma_list(value: object) -> object:
    """``CKPTSTORE_SIGNING_KEYS=old,new``: keys in a comma-separated list."""
    if isinstance(value, str):
        return tuple(key for key in value.split(",") if key)
    return value


def _named(field: str, variable: str) -> AliasChoices:
    """A field read from an environment variable other than ``CKPTSTORE_<FIELD>``."""
    return AliasChoices(field, variable)


class ServerSettings(BaseSettings):
    """Every knob of the server, each from ``CKPTSTORE_<NAME>`` (names below, upper
    case) unless given as a keyword; keywords win."""

    model_config = SettingsConfigDict(env_prefix="CKPTSTORE_", frozen=True, extra="forbid")

    data_dir: Path = Field(
        Path("./data"), validation_alias=AliasChoices("data_dir", "CKPTSTORE_DATA")
    )
    # the catalog: None for SQLite in the data directory, or a postgresql:// URL that
    # several servers share (they share the data directory's packs too)
    catalog: str | None = None
    # where the packs are: None for <data>/packs, a directory, or s3://bucket/prefix
    # (endpoint from CKPTSTORE_S3_ENDPOINT, region and credentials from AWS_*)
    blocks: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    public_url: str | None = None  # base of signed URLs; default http://host:port
    signing_keys: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)] = ()
    url_ttl_s: int = Field(3600, ge=1)
    # how long a server process trusts an API key it found valid before it looks it up
    # again: a revoked key is refused at most this long after `keys revoke` (0: at once)
    api_key_cache_s: float = Field(1.0, ge=0, le=60)
    gc_interval_s: float = Field(600.0, gt=0)
    gc_after_delete_s: float = Field(5.0, ge=0)
    # how long a block no checkpoint uses stays before GC may take it (CKPTSTORE_GC_GRACE)
    gc_grace_s: float = Field(
        3600.0, ge=0, validation_alias=AliasChoices("gc_grace_s", "CKPTSTORE_GC_GRACE")
    )
    # a pending checkpoint that got no data for this long is deleted by GC
    pending_ttl_s: float = Field(24 * 3600.0, gt=0)
    # uploads a tenant may run at once (more get 429), the threads all uploads share
    # (fewer than the server's pool of 40, so reads and /healthz always find one), and
    # how long a request body may pause before it is cut (408)
    uploads_per_tenant: int = Field(4, ge=1)
    upload_threads: int = Field(16, ge=1, le=32)
    body_read_timeout_s: float = Field(60.0, gt=0)
    max_block_batch_bytes: int = Field(64 * 1024 * 1024, ge=1)
    # JSON bodies are parsed whole; block-id lists of a checkpoint of a million blocks fit
    max_json_body_bytes: int = Field(96 * 1024 * 1024, ge=1024)
    min_free_bytes: int = Field(64 * 1024 * 1024, ge=0)  # /healthz answers 507 below this
    anonymous_tenant: str | None = None  # requests without a key act as this tenant (dev only)
    delta_max_depth: int = Field(8, ge=0)  # StoreConfig.delta_max_depth: ratio against speed
    # raw bytes of just-stored tensor blocks kept for the rebases (StoreConfig.delta_cache_bytes):
    # memory against decoding bases from packs
    delta_cache_bytes: int = Field(StoreConfig.delta_cache_bytes, ge=0)

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @classmethod
    def from_env(cls, **overrides: object) -> ServerSettings:
        """Settings from ``CKPTSTORE_*`` variables; keyword arguments that are not None
        win. A bad value raises ValueError naming its variable."""
        given = {name: value for name, value in overrides.items() if value is not None}
        try:
            return cls(**given)  # type: ignore[arg-type]  # pydantic validates each value
        except ValidationError as exc:
            raise ValueError(_explain(exc)) from None

    def store_config(self) -> StoreConfig:
        """The engine's settings that the server's own settings decide."""
        return StoreConfig(
            delta_max_depth=self.delta_max_depth,
            delta_cache_bytes=self.delta_cache_bytes,
            gc_grace_s=self.gc_grace_s,
            pending_ttl_s=self.pending_ttl_s,
        )

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


def _explain(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "settings"
        field = ServerSettings.model_fields.get(name)
        alias = field.validation_alias if field else None
        variable = (  # the environment variable's own name, where it is not the field's
            str(alias.choices[-1]) if isinstance(alias, AliasChoices) else f"CKPTSTORE_{name}"
        ).upper()
        problems.append(f"{variable}={error.get('input')!r}: {error['msg']}")
    return "; ".join(problems)
