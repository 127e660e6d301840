"""Metadata stores: the embedded DuckDB file store and the in-memory Polars store."""
