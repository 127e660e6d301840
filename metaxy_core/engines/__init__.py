"""Engines that compute provenance and increments: Polars and DuckDB, with the same methods."""
