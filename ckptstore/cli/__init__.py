"""The ``ckptstore`` command."""
