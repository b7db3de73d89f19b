"""Checkpoint references: the names a caller may give a checkpoint, and the id each stands for.

A reference is one of:

- a checkpoint id (``ckpt_284203a6e1f09b7c5d42``);
- a prefix of one, ``MIN_PREFIX_CHARS`` long or longer (``ckpt_284203a6``), that
  only one of the caller's checkpoints starts with. Only the caller's own
  checkpoints count: another tenant's neither match nor make a prefix ambiguous;
- ``JOB:latest``: the job's newest ready checkpoint, best copies aside (a best
  copy repeats the bytes of a checkpoint saved before it);
- ``JOB:best``: the job's best copy (``policies.py``);
- ``JOB:final``: the job's newest ready checkpoint of type final.

Job ids and checkpoint ids have no ``:``, so the forms cannot be mistaken for one
another. A full id wins over a prefix: the id ``run1`` names that checkpoint even
when ``run10`` exists.

An alias moves as the job saves, and a prefix may become ambiguous: whatever must
keep naming one checkpoint (an endpoint's pin, a signed URL, an answer) holds the
id the reference resolved to, never the reference.
"""

from __future__ import annotations

from ckptstore.errors import AmbiguousCheckpointId, CheckpointNotFound, UnknownAlias
from ckptstore.store.catalog.base import Lookups
from ckptstore.store.catalog.records import CHECKPOINT_TYPES
from ckptstore.store.ids import check_checkpoint_id, check_job_id

# The types each alias looks among: ``latest`` leaves out best copies.
ALIASES: dict[str, tuple[str, ...]] = {
    "latest": tuple(t for t in CHECKPOINT_TYPES if t != "best"),
    "best": ("best",),
    "final": ("final",),
}
# Shorter references are taken as whole ids only: a prefix of a few characters would
# nearly always be ambiguous ("ckpt_" alone starts every generated id).
MIN_PREFIX_CHARS = 8
# Ids an ambiguity error names (the caller's own).
SHOWN_MATCHES = 5


def resolve(lookup: Lookups, tenant_id: str, reference: str) -> str:
    """The id of the checkpoint of ``tenant_id`` that ``reference`` names.

    Raises ``CheckpointNotFound`` (nothing matches, or the job has no checkpoint for the
    alias), ``AmbiguousCheckpointId`` (a prefix of several of the tenant's checkpoints),
    ``UnknownAlias`` or ``InvalidArgument`` (not a reference at all)."""
    if isinstance(reference, str) and ":" in reference:
        return _resolve_alias(lookup, tenant_id, reference)
    check_checkpoint_id(reference)
    if len(reference) < MIN_PREFIX_CHARS:
        return reference  # an id, whole: the caller's lookup finds it or not
    found = lookup.ids_with_prefix(tenant_id, reference, SHOWN_MATCHES + 1)
    if reference in found or not found:
        return reference
    if len(found) == 1:
        return found[0]
    shown = found[:SHOWN_MATCHES]
    raise AmbiguousCheckpointId(reference, shown, more=len(found) > len(shown))


def _resolve_alias(lookup: Lookups, tenant_id: str, reference: str) -> str:
    job_id, _, alias = reference.partition(":")
    types = ALIASES.get(alias)
    if types is None:
        raise UnknownAlias(reference, tuple(ALIASES))
    record = lookup.newest_ready(tenant_id, check_job_id(job_id), types)
    if record is None:
        raise CheckpointNotFound(reference)
    return record.checkpoint_id
