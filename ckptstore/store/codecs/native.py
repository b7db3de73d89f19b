"""The plain C loops of the codecs (``_kernels.c`` binding ``kernels/loops.c``), or
None where the package was built without a C compiler: then numpy does the same
work, slower (bench: byte_planes). The one place that imports the extension."""

from __future__ import annotations

import importlib
from types import ModuleType

kernels: ModuleType | None
try:  # a C extension, without type stubs: typed as a module
    kernels = importlib.import_module("ckptstore.store.codecs._kernels")
except ImportError:  # built without a C compiler
    kernels = None
