"""The integrations' figures: what three Hugging Face Trainer checkpoints of one run cost
in the store against their folders, and one tensor of a large safetensors file over
HTTP against downloading the whole file.

    python -m bench.integrations [--layers 4] [--width 256] [--file-mb 256] [--repeat 5]

1. A GPT-2 built from a config (``--layers``, ``--width``; nothing downloaded) trains
   on CPU on random tokens with ``CkptStoreCallback`` storing a checkpoint every
   ``--save-steps`` steps, three in all, into a store; the report gives each
   checkpoint folder's size, the bytes each added to the store when stored, and the
   store's total once the background re-encoding as deltas is done (``settle``).
2. A safetensors file of ``--file-mb`` MB of float32 weights (4 MiB tensors) is pushed
   to a real server (``ckptstore serve`` on loopback); then, medians of ``--repeat``
   runs: ``load_tensor`` of one tensor (a different one each run), and
   ``Client.restore`` of the whole file to disk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import MB, WORK, save_report

MIB = 1 << 20
TENSOR_ELEMENTS = MIB  # float32: 4 MiB a tensor


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def hf_run(work: Path, layers: int, width: int, save_steps: int) -> dict[str, object]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from ckptstore import CheckpointStore
    from ckptstore.integrations.transformers import CkptStoreCallback

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=8000, n_positions=128, n_embd=width, n_layer=layers, n_head=width // 64
    )
    model = GPT2LMHeadModel(config)
    rows = torch.randint(0, config.vocab_size, (64 * save_steps, 64))
    data = [{"input_ids": row, "labels": row} for row in rows]
    store = CheckpointStore.open(work / "store")
    callback = CkptStoreCallback(store, "job_hf")
    args = TrainingArguments(
        output_dir=str(work / "out"),
        max_steps=3 * save_steps,
        per_device_train_batch_size=8,
        learning_rate=5e-4,
        save_strategy="steps",
        save_steps=save_steps,
        logging_steps=save_steps,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    Trainer(model=model, args=args, train_dataset=data, callbacks=[callback]).train()
    store.settle()
    stats = store.stats()
    checkpoints = [
        {
            "name": record.name,
            "folder_bytes": folder_bytes(work / "out" / record.name),
            "stored_bytes_when_put": record.stored_bytes,
        }
        for record in callback.saved
    ]
    store.close()
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "layers": layers,
        "width": width,
        "checkpoints": checkpoints,
        "folders_bytes": sum(int(c["folder_bytes"]) for c in checkpoints),
        "store_bytes_settled": stats.stored_bytes,
    }


def timed_s(repeat: int, run: Callable[[int], object]) -> list[float]:
    """The seconds each of ``repeat`` runs took."""
    times = []
    for i in range(repeat):
        start = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - start)
    return times


def safetensors_over_http(work: Path, file_mb: int, repeat: int) -> dict[str, object]:
    import torch
    from safetensors.torch import save_file

    from ckptstore import CheckpointStore
    from ckptstore.client import Client
    from ckptstore.integrations import safetensors as st
    from ckptstore.testing.live_server import live_server

    count = max(1, file_mb * MB // (TENSOR_ELEMENTS * 4))
    rng = np.random.default_rng(0)
    tensors = {
        f"layers.{i}.weight": torch.from_numpy(
            (rng.standard_normal(TENSOR_ELEMENTS, dtype=np.float32) * np.float32(0.02)).reshape(
                1024, -1
            )
        )
        for i in range(count)
    }
    work.mkdir(parents=True, exist_ok=True)
    path = work / "model.safetensors"
    save_file(tensors, path)
    size = path.stat().st_size
    data_dir = work / "server" / "data"
    made = subprocess.run(
        [str(Path(sys.executable).parent / "ckptstore"), "keys", "create", "--tenant", "bench"]
        + ["--data", str(data_dir), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    key = json.loads(made.stdout)["key"]
    names = list(tensors)
    figures: dict[str, object] = {
        "file_bytes": size,
        "tensors": count,
        "tensor_bytes": TENSOR_ELEMENTS * 4,
    }

    def measure(where: str, target: Any) -> None:
        record = target.put("job_st", path)

        def one(i: int) -> None:
            name = names[(i * 7) % len(names)]
            assert torch.equal(st.load_tensor(target, record.checkpoint_id, name), tensors[name])

        def whole(i: int) -> None:
            out = work / f"whole-{i}.safetensors"
            target.restore(record.checkpoint_id, out)
            out.unlink()

        figures[f"{where}_load_tensor_s"] = timed_s(repeat, one)
        figures[f"{where}_whole_file_s"] = timed_s(max(3, repeat // 2), whole)

    with live_server(data_dir) as base, Client(base, key) as client:
        measure("http", client)
    store = CheckpointStore.open(work / "store")
    measure("local", store)
    store.close()
    return figures


def report(hf: dict[str, object], http: dict[str, object]) -> list[str]:
    lines = [
        f"## Three Trainer checkpoints of one run ({hf['parameters']:,} parameters,"
        f" GPT-2 {hf['layers']} layers x {hf['width']})",
        "",
        "| checkpoint | folder (MB) | added to the store when saved (MB) |",
        "|---|---|---|",
    ]
    for c in hf["checkpoints"]:  # type: ignore[attr-defined]
        lines.append(
            f"| {c['name']} | {c['folder_bytes'] / MB:.1f} |"
            f" {c['stored_bytes_when_put'] / MB:.1f} |"
        )
    folders, settled = int(hf["folders_bytes"]), int(hf["store_bytes_settled"])  # type: ignore[call-overload]
    lines += [
        "",
        f"Folders together: {folders / MB:.1f} MB. The store after re-encoding the older"
        f" checkpoints as deltas (`settle`): {settled / MB:.1f} MB"
        f" ({settled / folders:.1%} of the folders, {folders / settled:.2f}x).",
        "",
        f"## One tensor of a {int(http['file_bytes']) / MB:.0f} MB safetensors file",  # type: ignore[call-overload]
        "",
        f"{http['tensors']} float32 tensors of {int(http['tensor_bytes']) / MIB:.0f} MiB; over"  # type: ignore[call-overload]
        " HTTP from `ckptstore serve` on loopback, locally from an embedded store. Seconds:"
        " median (fastest-slowest).",
        "",
        "| where | `load_tensor` (header + one tensor) | the whole file (`restore`) | ratio |",
        "|---|---|---|---|",
    ]
    for where, label in (("http", "HTTP (Range requests)"), ("local", "embedded store")):
        one, whole = http[f"{where}_load_tensor_s"], http[f"{where}_whole_file_s"]
        lines.append(
            f"| {label} | {_spread(one)} | {_spread(whole)} |"  # type: ignore[arg-type]
            f" {statistics.median(whole) / statistics.median(one):.0f}x |"  # type: ignore[arg-type]
        )
    return lines


def _spread(times: list[float]) -> str:
    return f"{statistics.median(times):.3f} ({min(times):.3f}-{max(times):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--save-steps", type=int, default=10)
    parser.add_argument("--file-mb", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="integrations-", dir=WORK))
    try:
        hf = hf_run(work / "hf", args.layers, args.width, args.save_steps)
        print(json.dumps(hf, indent=2))
        http = safetensors_over_http(work / "http", args.file_mb, args.repeat)
        print(json.dumps(http, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = save_report(
        "integrations",
        "Integrations: Trainer checkpoints stored, one tensor over HTTP",
        report(hf, http),
        {"hf": hf, "http": http, "arguments": vars(args)},
    )
    print(path)


if __name__ == "__main__":
    main()
