"""Cutting a checkpoint's bytes into blocks: reading sources, sniffing tensor formats
(safetensors, npy/npz, torch zip), cutting tensors on element boundaries and opaque
bytes by content, and naming each block by its hash."""
