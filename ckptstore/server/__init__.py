"""The HTTP service: the checkpoint API of the seed, uploads and signed downloads."""
