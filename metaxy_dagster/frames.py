"""What an asset function returns, as the Polars frame the store writes."""

from __future__ import annotations

from typing import Any

import narwhals as nw
import polars as pl

__all__ = ["to_polars"]


def to_polars(frame: Any, what: str) -> pl.DataFrame:
    """A Polars, pandas or Arrow frame (eager or lazy) as a Polars frame; ``what`` names it in
    the error."""
    try:
        native = nw.from_native(frame)
    except TypeError:
        raise TypeError(
            f"{what}: expected a Polars, pandas or Arrow frame, got {type(frame).__name__}."
        ) from None
    eager = native.collect("polars") if isinstance(native, nw.LazyFrame) else native
    result: pl.DataFrame = eager.to_polars()
    return result
