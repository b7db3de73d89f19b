"""``JOB:latest`` for the integrations' resume helpers, on any store or client.

The store resolves references itself once ``store/refs.py`` is in (a full id, a
unique prefix, ``JOB:latest``, ``JOB:best``, ``JOB:final``); until a target does,
``latest`` is found here by the same rule (the job's newest ready checkpoint, best
copies aside) from ``list``, and anything else is passed to ``get``. When every
target resolves references, ``resolve`` is ``target.get(reference).checkpoint_id``.
"""

from __future__ import annotations

from typing import Any

from ckptstore.errors import CheckpointNotFound
from ckptstore.store.catalog.records import CHECKPOINT_TYPES

PAGE = 50  # checkpoints looked at per page while pending ones are skipped


def resolve(target: Any, reference: str) -> str:
    """The checkpoint id ``reference`` names on ``target`` (a CheckpointStore or Client)."""
    job_id, colon, alias = reference.partition(":")
    if not colon or alias != "latest":
        return str(target.get(reference).checkpoint_id)
    types = tuple(t for t in CHECKPOINT_TYPES if t != "best")
    cursor = None
    while True:
        page = target.list(job_id, order="desc", limit=PAGE, types=types, cursor=cursor)
        for record in page.checkpoints:
            if record.status == "ready":
                return str(record.checkpoint_id)
        cursor = page.next_cursor
        if cursor is None:
            raise CheckpointNotFound(reference)
