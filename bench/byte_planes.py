"""Byte planes as the engine makes them (codec 4: C loops, or numpy, + zstandard)
against blosc2's SIMD shuffle.

    python -m bench.byte_planes

All split 1 MiB tensor blocks of the pretrain corpus into byte planes and
compress them with zstd, on one thread. blosc2 is only measured when
installed (``make bench-peers``); the engine keeps its own planes unless
blosc2 is clearly faster at the same ratio.
"""

from __future__ import annotations

import importlib.util
import time
import zipfile

from bench.common import MB, WORK, save_report
from bench.corpus import write
from ckptstore.store.codecs import native
from ckptstore.store.codecs.block import BlockCodec
from ckptstore.store.codecs.ids import Codec

BLOCK = 1 << 20


def tensor_blocks() -> list[bytes]:
    files = write("pretrain", WORK / "corpus-small", "small", 6)
    archive = zipfile.ZipFile(files[-1])
    data = b"".join(archive.read(n) for n in archive.namelist() if "/data/" in n)
    return [data[i : i + BLOCK] for i in range(0, len(data) - BLOCK + 1, BLOCK)]


def measure(blocks: list[bytes], encode, decode) -> dict[str, float]:
    start = time.perf_counter()
    encoded = [encode(b) for b in blocks]
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = [decode(e) for e in encoded]
    decode_s = time.perf_counter() - start
    assert all(bytes(d) == b for d, b in zip(decoded, blocks, strict=True))
    n = sum(map(len, blocks))
    return {
        "ratio": n / sum(map(len, encoded)),
        "encode_mb_s": n / MB / encode_s,
        "decode_mb_s": n / MB / decode_s,
    }


def main() -> None:
    blocks = tensor_blocks()
    codec = BlockCodec(zstd_level=1)

    def engine() -> dict[str, float]:
        return measure(
            blocks,
            lambda b: codec.encode(memoryview(b), 4)[1],
            lambda p: codec.decode(Codec.FRAMED_PLANES, p, BLOCK),
        )

    rows = {}
    if native.kernels is not None:
        rows["codec 4, C loops + zstandard"] = engine()
    kernels, native.kernels = native.kernels, None
    try:
        rows["codec 4, numpy loops + zstandard"] = engine()
    finally:
        native.kernels = kernels
    if importlib.util.find_spec("blosc2") is not None:
        import blosc2

        blosc2.set_nthreads(1)
        options = {
            "codec": blosc2.Codec.ZSTD,
            "clevel": 1,
            "typesize": 4,
            "filters": [blosc2.Filter.SHUFFLE],
        }
        rows["blosc2 shuffle + zstd"] = measure(
            blocks, lambda b: blosc2.compress2(b, **options), blosc2.decompress2
        )
    lines = [
        f"{len(blocks)} blocks of 1 MiB (float32 tensors of the pretrain corpus), one thread;"
        " codec 4 with its plane parameters (PLANE_ZSTD_PARAMS), blosc2 at zstd level 1.",
        "",
        "| implementation | ratio | encode MB/s | decode MB/s |",
        "|---|---:|---:|---:|",
        *(
            f"| {name} | {r['ratio']:.3f} | {r['encode_mb_s']:,.0f} | {r['decode_mb_s']:,.0f} |"
            for name, r in rows.items()
        ),
    ]
    ours = next(iter(rows.values()))
    theirs = rows.get("blosc2 shuffle + zstd")
    if theirs is None:
        lines += ["", "blosc2 is not installed (make bench-peers installs it)."]
    else:
        lines += [
            "",
            f"Against the engine's first row, blosc2 stores {theirs['ratio'] / ours['ratio']:.3f}x"
            f" the ratio, encodes {theirs['encode_mb_s'] / ours['encode_mb_s']:.2f}x and decodes"
            f" {theirs['decode_mb_s'] / ours['decode_mb_s']:.2f}x as fast. Taking it would also"
            " cost a second payload format (blosc2 frames) and a runtime dependency.",
        ]
    md = save_report("byte-planes", "Byte planes: numpy + zstandard vs blosc2", lines, rows)
    print("\n".join(lines))
    print(f"\nreport: {md}")


if __name__ == "__main__":
    main()
