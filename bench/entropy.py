"""How much a better entropy stage than zstd could save on byte planes.

    python -m bench.entropy

On two checkpoints of the pretrain (fp32) and bf16 corpora, for each byte
plane of the tensors, whole and as the delta against the previous
checkpoint (codec 3's transform), in bits per element:

- zstd-1, what the engine stores;
- zstd-1 with a dictionary trained on the same plane of the previous
  checkpoint (a trained dictionary per plane);
- the order-0 entropy (what an ideal static coder such as rANS reaches);
- the order-1 entropy with the previous byte of the plane as context
  (an ideal context-model coder, model cost not counted: a lower bound);
both per run of 256 Ki elements, the planes of one 1 MiB fp32 block.

The gap between zstd and the ideal coders bounds what replacing the entropy
stage could gain.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import zstandard

from bench.common import WORK, save_report
from bench.corpus import write
from ckptstore.store.codecs import delta_of, to_planes

DICT_BYTES = 16 * 1024
CHUNK = 256 * 1024  # elements: the planes of one 1 MiB fp32 block, as the engine stores them


def tensors(path: Path) -> dict[str, tuple[bytes, int]]:
    """Tensor name -> (bytes, element width) of a torch.save or safetensors file."""
    if path.suffix == ".pt":
        archive = zipfile.ZipFile(path)
        return {
            name.split("/", 1)[1]: (archive.read(name), 4)
            for name in archive.namelist()
            if "/data/" in name
        }
    data = path.read_bytes()
    (n,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8 : 8 + n])
    widths = {"F32": 4, "BF16": 2, "F16": 2}
    return {
        name: (
            data[8 + n + info["data_offsets"][0] : 8 + n + info["data_offsets"][1]],
            widths.get(info["dtype"], 1),
        )
        for name, info in header.items()
        if name != "__metadata__"
    }


def order0_bits(plane: np.ndarray) -> float:
    p = np.bincount(plane, minlength=256) / len(plane)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum()) * len(plane)


def order1_bits(plane: np.ndarray) -> float:
    joint = np.bincount(plane[:-1].astype(np.int64) * 256 + plane[1:], minlength=65536)
    joint = joint.reshape(256, 256).astype(np.float64)
    rows = joint.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = np.where(joint > 0, joint * np.log2(joint / rows), 0.0)
    return float(-cond.sum())


def planes_of(files: list[Path], delta: bool) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """The planes (per byte position) of the newest checkpoint and of the one before."""
    new, old, older = tensors(files[-1]), tensors(files[-2]), tensors(files[-3])
    width = max(w for _, w in new.values())

    def gather(cur: dict, prev: dict) -> list[np.ndarray]:
        rows: list[list[np.ndarray]] = [[] for _ in range(width)]
        for name, (data, w) in cur.items():
            if w != width or len(data) < 4096:
                continue
            data = data[: len(data) // w * w]
            x = (
                delta_of(data, prev[name][0][: len(data)], w)
                if delta
                else np.frombuffer(data, np.uint8)
            )
            planes = to_planes(memoryview(np.ascontiguousarray(x)), w).reshape(w, -1)
            for j in range(w):
                rows[j].append(planes[j])
        return [np.concatenate(r) for r in rows]

    current = gather(new, old)
    previous = gather(old, older)
    return current, previous, width


def measure(files: list[Path], delta: bool) -> dict[str, list[float]]:
    current, previous, width = planes_of(files, delta)
    n = len(current[0])
    compressor = zstandard.ZstdCompressor(level=1)
    out: dict[str, list[float]] = {
        "zstd-1": [],
        "zstd-1 + trained dictionary": [],
        "order-0 ideal": [],
        "order-1 ideal": [],
    }
    for plane, before in zip(current, previous, strict=True):
        out["zstd-1"].append(len(compressor.compress(plane.tobytes())) * 8 / n)
        samples = [before[i : i + 4096].tobytes() for i in range(0, len(before), 4096)]
        try:
            dictionary = zstandard.train_dictionary(DICT_BYTES, samples)
            with_dict = zstandard.ZstdCompressor(level=1, dict_data=dictionary)
            size = len(with_dict.compress(plane.tobytes())) + DICT_BYTES
            out["zstd-1 + trained dictionary"].append(size * 8 / n)
        except zstandard.ZstdError:
            out["zstd-1 + trained dictionary"].append(float("nan"))
        chunks = [plane[i : i + CHUNK] for i in range(0, n, CHUNK)]
        out["order-0 ideal"].append(sum(order0_bits(c) for c in chunks) / n)
        out["order-1 ideal"].append(sum(order1_bits(c) for c in chunks) / n)
    return out


def main() -> None:
    rows = {}
    lines = [
        "Bits per element of each byte plane (plane 0 = least significant byte), on the last"
        " checkpoint of each corpus; `delta` is the plane of codec 3's difference from the"
        " previous checkpoint. Ideal coders count no model cost.",
        "",
        "| corpus | data | coder | " + "per plane | total | vs zstd-1 |",
        "|---|---|---|---|---:|---:|",
    ]
    for corpus in ("pretrain", "bf16"):
        files = write(corpus, WORK / "corpus-small", "small", 6)
        for delta in (False, True):
            result = measure(files, delta)
            label = "delta" if delta else "whole"
            rows[f"{corpus} {label}"] = result
            base = sum(result["zstd-1"])
            for coder, bits in result.items():
                total = sum(bits)
                lines.append(
                    f"| {corpus} | {label} | {coder} | {' / '.join(f'{b:.2f}' for b in bits)}"
                    f" | {total:.2f} | {total / base:.3f} |"
                )
    lines += [
        "",
        "On fp32 planes zstd-1 is within 1% of the order-0 bound; on bf16 planes it is 4-8%"
        " above it (whole-bit Huffman code lengths on the skewed sign-and-exponent plane and"
        " on delta planes). A dictionary trained on the previous checkpoint never pays. The"
        " order-1 figures count no model cost: a 256x256 table fitted to 256 Ki samples"
        " flatters noise-like planes by about 0.2 bits each, so a context model's real gain"
        " is mostly on the exponent plane. Closing these gaps needs an rANS or arithmetic"
        " coder, which none of the project's dependencies provides at a usable speed.",
    ]
    md = save_report("entropy", "Entropy stage options on byte planes", lines, rows)
    print("\n".join(lines))
    print(f"\nreport: {md}")


if __name__ == "__main__":
    main()
