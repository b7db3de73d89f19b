"""Checkpoint sequences saved the way real trainers save them, by really training.

    python -m bench.corpus OUT_DIR [--scale small|medium|large] [--checkpoints 6]

Everything is seeded, so the same command writes the same bytes. Corpora:

- ``pretrain``: a small GPT-style transformer trained from scratch in fp32 with
  AdamW; ``torch.save({"model", "optimizer", "step"})`` to ``step_N.pt`` each
  save (the file name goes into the archive, as with any trainer).
- ``finetune-frozen``: a fixed base with embeddings and most blocks frozen,
  the rest fine-tuned; the full state saved each time.
- ``lora``: a frozen base plus LoRA adapters; the full state_dict saved as
  safetensors each time.
- ``bf16``: model-only bf16 safetensors of a run like ``pretrain``.
- ``opaque``: non-tensor data with insertions and deletions between versions.
- ``opaque-scattered``: a pickled training state (per-sample losses and counts,
  sampler state) where a few hundred values change in place per save, a few of
  them growing by a byte in the pickle.
"""

from __future__ import annotations

import argparse
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
from torch import nn

SCALES = {
    "small": {"d_model": 256, "layers": 4, "vocab": 4096, "seq": 64, "steps": 3},
    "medium": {"d_model": 768, "layers": 6, "vocab": 8192, "seq": 64, "steps": 3},
    "large": {"d_model": 1024, "layers": 12, "vocab": 32000, "seq": 128, "steps": 3},
}
CORPORA = ("pretrain", "finetune-frozen", "lora", "bf16", "opaque", "opaque-scattered")


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, max(1, d // 64), batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        mask = torch.triu(torch.ones(x.shape[1], x.shape[1], dtype=torch.bool), 1)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int, d: int, layers: int, seq: int) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(seq, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(layers))
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int = 8) -> None:
        super().__init__()
        self.base = base
        self.lora_a = nn.Parameter(torch.randn(rank, base.in_features) * 0.01)
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + x @ self.lora_a.T @ self.lora_b.T


def train(model: nn.Module, optimizer, cfg: dict, steps: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, cfg["vocab"], (8, cfg["seq"]), generator=gen)
        logits = model(idx[:, :-1])
        loss = nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), idx[:, 1:].reshape(-1)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """The safetensors layout: u64 header length, JSON header, then the tensor bytes."""
    names = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}
    header: dict[str, object] = {}
    blobs, offset = [], 0
    for name, tensor in tensors.items():
        data = tensor.detach().contiguous().view(torch.uint8).numpy().tobytes()
        header[name] = {
            "dtype": names[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)) + text)
        for blob in blobs:
            out.write(blob)


def model_for(cfg: dict, seed: int) -> TinyGPT:
    torch.manual_seed(seed)
    return TinyGPT(cfg["vocab"], cfg["d_model"], cfg["layers"], cfg["seq"])


def pretrain(out: Path, cfg: dict, n: int, bf16: bool = False) -> None:
    model = model_for(cfg, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    for i in range(n):
        train(model, optimizer, cfg, cfg["steps"], seed=100 + i)
        step = (i + 1) * cfg["steps"]
        if bf16:
            save_safetensors(
                {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()},
                out / f"model_step_{step}.safetensors",
            )
        else:
            torch.save(
                {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step},
                out / f"step_{step}.pt",
            )


def finetune_frozen(out: Path, cfg: dict, n: int) -> None:
    model = model_for(cfg, 2)
    frozen = [model.tok, model.pos, *model.blocks[: max(1, len(model.blocks) - 1)]]
    for module in frozen:
        module.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    for i in range(n):
        train(model, optimizer, cfg, cfg["steps"], seed=200 + i)
        torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict()},
            out / f"finetune_{i + 1}.pt",
        )


def lora(out: Path, cfg: dict, n: int) -> None:
    model = model_for(cfg, 3)
    model.requires_grad_(False)
    for block in model.blocks:
        block.mlp[0] = LoRALinear(block.mlp[0])
        block.mlp[2] = LoRALinear(block.mlp[2])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for i in range(n):
        train(model, optimizer, cfg, cfg["steps"], seed=300 + i)
        save_safetensors(dict(model.state_dict()), out / f"adapter_{i + 1}.safetensors")


def opaque(out: Path, cfg: dict, n: int) -> None:
    rng = np.random.default_rng(4)
    size = cfg["d_model"] * cfg["layers"] * 4096
    words = [
        w.encode()
        for w in ["step", "loss", "grad", "norm", "lr", "epoch", "token", "batch", "rank", "shard"]
    ]
    data = bytearray(b" ".join(words[i] for i in rng.integers(0, len(words), size // 5)))
    for i in range(n):
        for _ in range(20):  # scattered edits between versions
            pos, length = int(rng.integers(0, len(data))), int(rng.integers(1, 200))
            if rng.random() < 0.5:
                data[pos:pos] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
            else:
                del data[pos : pos + length]
        (out / f"state_{i + 1}.bin").write_bytes(bytes(data))


def opaque_scattered(out: Path, cfg: dict, n: int) -> None:
    rng = np.random.default_rng(5)
    values = cfg["d_model"] * cfg["layers"] * 256  # about 18 pickled bytes each
    losses = rng.standard_normal(values)
    counts = rng.integers(0, 200, values)
    for i in range(n):
        at = rng.integers(0, values, 300)  # values changed in place since the last save
        losses[at] += rng.standard_normal(len(at))
        counts[at[:100]] += 300  # these now pickle one byte wider
        state = {
            "step": (i + 1) * 100,
            "sampler": {"epoch": i // 3, "seed": 5, "position": (i + 1) * 6400},
            "losses": losses.tolist(),
            "counts": counts.tolist(),
        }
        (out / f"trainer_state_{i + 1}.pkl").write_bytes(pickle.dumps(state, protocol=4))


def write(corpus: str, out: Path, scale: str, n: int) -> list[Path]:
    """Write one corpus into ``out/corpus`` (reused if complete); its files in save order."""
    target = out / corpus
    marker = target / ".complete"
    if not marker.exists():
        target.mkdir(parents=True, exist_ok=True)
        for stale in target.iterdir():
            stale.unlink()
        cfg = SCALES[scale]
        torch.manual_seed(0)
        {
            "pretrain": lambda: pretrain(target, cfg, n),
            "finetune-frozen": lambda: finetune_frozen(target, cfg, n),
            "lora": lambda: lora(target, cfg, n),
            "bf16": lambda: pretrain(target, cfg, n, bf16=True),
            "opaque": lambda: opaque(target, cfg, n),
            "opaque-scattered": lambda: opaque_scattered(target, cfg, n),
        }[corpus]()
        marker.write_text(f"{scale} {n}\n")
    return sorted(
        (p for p in target.iterdir() if not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime_ns,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--scale", choices=SCALES, default="small")
    parser.add_argument("--checkpoints", type=int, default=6)
    args = parser.parse_args()
    for corpus in CORPORA:
        files = write(corpus, args.out, args.scale, args.checkpoints)
        print(f"{corpus}: {len(files)} files, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
