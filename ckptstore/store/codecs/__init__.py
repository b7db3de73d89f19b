"""How a block's bytes are stored: byte planes, exponent grouping and deltas, each
compressed with zstd, under a codec id persisted with every block (FORMAT.md).

- ``ids``: the codec ids, element widths and DecodeError;
- ``block``: BlockCodec, encode and decode entry points, and the decoder table;
- ``encoder``: BlockEncoder, how an ingest or upload stores a new block;
- ``decode`` and ``legacy``: decoders of the codecs written now, and of older ones;
- ``planes``: byte planes split and joined; ``grouping``: elements grouped by key;
- ``estimate``: sampled estimates that choose planes, widths and grouping;
- ``frames``: zstd parameters, the frame table, each thread's zstd contexts;
- ``native``: the C loops (``_kernels.c`` over ``kernels/loops.c``), when built.
"""
