"""Packs: the files blocks are stored in, how they are written, and how one entry is
loaded and decoded back into a block's bytes (FORMAT.md)."""
