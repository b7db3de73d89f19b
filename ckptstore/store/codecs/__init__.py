"""How a block's bytes are stored: byte planes, exponent grouping and deltas, each
compressed with zstd, under a codec id persisted with every block (FORMAT.md)."""
