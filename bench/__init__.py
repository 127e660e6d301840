"""Benchmark of ``resolve_update`` against a hand-written floor and metaxy 0.1.11; see README.md."""
