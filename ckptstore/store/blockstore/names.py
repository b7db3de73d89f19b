"""Pack names, the same in every backend."""

from __future__ import annotations

import re

from ckptstore.errors import InvalidArgument

_NAME = re.compile(r"[0-9a-z_-]{4,64}")


def check_pack_name(name: str) -> str:
    """``name`` if it is a valid pack name (4-64 of 0-9 a-z _ -), else InvalidArgument."""
    if not _NAME.fullmatch(name):
        raise InvalidArgument("pack name", name, "4-64 characters of 0-9 a-z _ -")
    return name
