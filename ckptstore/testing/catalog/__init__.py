"""The behaviour every catalog backend must show: one test class per Protocol
(``BlockIndexTests``, ``LeaseTests``, ``CheckpointTests``, ``LookupTests``,
``FileTests``, ``RebaseTests``, ``MaintenanceTests``, ``ServiceRecordTests``) and
``CatalogTests``, all of them.

Subclass ``CatalogTests`` in ``tests/conformance/`` and provide a ``catalog``
fixture that returns an empty catalog.
"""

from ckptstore.testing.catalog.blocks import BlockIndexTests
from ckptstore.testing.catalog.checkpoints import CheckpointTests
from ckptstore.testing.catalog.files import FileTests
from ckptstore.testing.catalog.leases import LeaseTests
from ckptstore.testing.catalog.lookups import LookupTests
from ckptstore.testing.catalog.maintenance import MaintenanceTests
from ckptstore.testing.catalog.rebases import RebaseTests
from ckptstore.testing.catalog.service import ServiceRecordTests


class CatalogTests(
    BlockIndexTests,
    LeaseTests,
    CheckpointTests,
    LookupTests,
    FileTests,
    RebaseTests,
    MaintenanceTests,
    ServiceRecordTests,
):
    """Every catalog test."""


__all__ = [
    "BlockIndexTests",
    "CatalogTests",
    "CheckpointTests",
    "FileTests",
    "LeaseTests",
    "LookupTests",
    "MaintenanceTests",
    "RebaseTests",
    "ServiceRecordTests",
]
