"""Data pipeline: generate (synth) → load safely (imageio) → curate (hashing, split) → serve (dataset)."""
