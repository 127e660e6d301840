"""Example multimodal pipeline: synthetic video clips, per-clip steps, and their data."""
