"""Sample ids given on the command line, as a frame of a feature's id columns.

Values are text on the command line; each id column is cast to the type the store holds it
as, and every id must name a current sample, so a typo deletes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import polars as pl

from metaxy_core.errors import ConfigError, UnknownSampleError
from metaxy_core.store.base import MetadataStore

__all__ = ["parse_ids"]

_SHOWN = 5


def _rows(
    feature: str, id_columns: Sequence[str], values: Sequence[str]
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for value in values:
        text = value.strip()
        if text.startswith("{"):
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"--ids {text!r} is not a JSON object ({exc}).") from None
            if sorted(row) != sorted(id_columns):
                raise ConfigError(
                    f"--ids {text!r} of {feature!r} must give exactly its id columns: "
                    f"{', '.join(id_columns)}."
                )
            rows.append(row)
        elif len(id_columns) == 1:
            rows.extend({id_columns[0]: v.strip()} for v in text.split(",") if v.strip())
        else:
            example = json.dumps({name: "..." for name in id_columns})
            raise ConfigError(
                f"{feature!r} has several id columns ({', '.join(id_columns)}): give each id "
                f"as a JSON object, e.g. --ids '{example}'."
            )
    return rows


def parse_ids(store: MetadataStore, feature: str, values: Sequence[str]) -> pl.DataFrame:
    """The current samples of ``feature`` that ``values`` name; raises if one is unknown."""
    ids = list(store.graph[feature].id_columns)
    stored = store.read(feature, columns=ids)
    rows = _rows(feature, ids, values)
    given = pl.DataFrame(rows, schema=dict.fromkeys(ids, pl.String), strict=False)
    if set(ids) <= set(stored.columns):
        given = given.cast({name: stored.schema[name] for name in ids}, strict=False)
        unknown = given.join(stored, on=ids, how="anti")
    else:
        unknown = given
    if unknown.height:
        shown = ", ".join(str(r) for r in unknown.head(_SHOWN).iter_rows(named=True))
        raise UnknownSampleError(
            f"{unknown.height} of the given ids are not current samples of {feature!r}, e.g. "
            f"{shown}. Check them with `metaxy history {feature}` or the store; nothing "
            "was deleted."
        )
    return given.unique(maintain_order=True)
