"""ckptstore inside the frameworks a training script runs in, one module each.

- ``transformers``: a ``TrainerCallback`` that stores each checkpoint the Trainer saves
- ``dcp``: a ``StorageWriter``/``StorageReader`` for PyTorch Distributed Checkpoint
- ``lightning``: a ``CheckpointIO`` plugin for PyTorch Lightning
- ``safetensors``: one tensor, or a whole file, read without fetching the rest

Each needs its framework (``pip install ckptstore[transformers]`` and so on); this
package imports none of them.
"""
