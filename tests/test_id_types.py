"""Id columns of every allowed type hash the same on every store and engine; others are refused.

Hash shards and aggregation member ids hash the *text* of id values. Engines render some
types differently (DuckDB prints ``2024-01-01 12:00:01.123``, Polars ``...01.123000``), so
the text is canonical: strings as they are, integers in decimal, booleans ``true``/``false``,
dates ISO, datetimes as nanoseconds since the Unix epoch. Floats and other types have no
single text and are refused as ids.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from metaxy_core import (
    FeatureDep,
    FeatureGraph,
    FeatureSpec,
    FieldRef,
    HashShard,
    errors,
    hash_parts,
    hash_string,
)
from metaxy_core.testing import STORE_KINDS, make_store

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
MOMENTS = [dt.datetime(2024, 1, 1, 12, 0, s, 123000 * (s % 3)) for s in range(12)]

ID_VALUES: dict[str, pl.Series] = {
    "string": pl.Series([f"clip-{i}" for i in range(12)]),
    "int64": pl.Series([i * 37 - 100 for i in range(12)], dtype=pl.Int64),
    "uint8": pl.Series(list(range(12)), dtype=pl.UInt8),
    "boolean": pl.Series([True, False]),
    "date": pl.Series([dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(12)]),
    "datetime-us": pl.Series(MOMENTS, dtype=pl.Datetime("us")),
    "datetime-ms-utc": pl.Series(MOMENTS, dtype=pl.Datetime("ms", "UTC")),
    "datetime-ns": pl.Series(MOMENTS, dtype=pl.Datetime("ns")),
}


def text(value: Any) -> str:
    """The canonical text of an id value, by the rule in the module docstring."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return str((moment - EPOCH) // dt.timedelta(microseconds=1) * 1000)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def shard_of(value: Any, count: int) -> int:
    return hash_string(text(value)) % count


@pytest.fixture(params=STORE_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def clip_graph() -> FeatureGraph:
    return FeatureGraph(
        [
            FeatureSpec(key="clips", id_columns=["id"], fields=["audio"]),
            FeatureSpec(
                key="crops", id_columns=["id"], fields=["audio"], deps=[FeatureDep("clips")]
            ),
        ]
    )


@pytest.mark.parametrize("id_type", list(ID_VALUES))
def test_hash_shards_of_every_id_type_follow_the_canonical_text(
    kind: str, id_type: str, tmp_path: Path
) -> None:
    ids = ID_VALUES[id_type].alias("id")
    store = make_store(kind, clip_graph(), tmp_path)
    store.write(
        "clips",
        pl.DataFrame([ids]).with_columns(
            pl.format("a-{}", pl.col("id").cast(pl.String)).alias("metaxy_data_version__audio")
        ),
    )
    seen: list[Any] = []
    for index in range(3):
        shard = HashShard(3, index)
        new = store.resolve_update("crops", filter=shard).new
        expected = sorted(v for v in ids.to_list() if shard_of(v, 3) == index)
        assert sorted(new["id"].to_list()) == expected
        assert store.count_update("crops", filter=shard).new == len(expected)
        seen += new["id"].to_list()
    assert sorted(seen) == sorted(ids.to_list())  # the shards split the samples


def event_graph() -> FeatureGraph:
    return FeatureGraph(
        [
            FeatureSpec(key="events", id_columns=["session", "at"], fields=["signal"]),
            FeatureSpec(
                key="sessions",
                id_columns=["session"],
                fields=["signal"],
                deps=[FeatureDep("events", lineage="aggregation")],
            ),
        ]
    )


def test_group_versions_hash_datetime_member_ids_as_epoch_nanoseconds(
    kind: str, tmp_path: Path
) -> None:
    events = pl.DataFrame(
        {
            "session": ["s1"] * 6 + ["s2"] * 6,
            "at": pl.Series(MOMENTS, dtype=pl.Datetime("us", "UTC")),
            "metaxy_data_version__signal": [f"v{i}" for i in range(12)],
        }
    )
    store = make_store(kind, event_graph(), tmp_path)
    store.write("events", events)
    new = store.resolve_update("sessions").new.sort("session")
    recipe = event_graph().versions.recipes[FieldRef("sessions", "signal")]
    for session in ("s1", "s2"):
        members = sorted(
            (f"{session}\x1f{text(at)}", [session, text(at), hash_string(dv)])
            for s, at, dv in events.iter_rows()
            if s == session
        )
        group = hash_parts([part for _, parts in members for part in parts])
        row = new.filter(pl.col("session") == session)
        assert row["metaxy_provenance__signal"].item() == hash_parts([recipe, group])


@pytest.mark.parametrize(
    ("values", "type_name"),
    [
        (pl.Series([1.0, 2.5]), "Float64"),
        (pl.Series([dt.time(1), dt.time(2)]), "Time"),
        (pl.Series([b"a", b"b"]), "Binary"),
    ],
)
def test_ids_without_one_canonical_text_are_refused(
    kind: str, tmp_path: Path, values: pl.Series, type_name: str
) -> None:
    store = make_store(kind, clip_graph(), tmp_path)
    frame = pl.DataFrame([values.alias("id")]).with_columns(
        pl.lit("a").alias("metaxy_data_version__audio")
    )
    message = (
        f"feature 'clips': id column 'id' has type {type_name}; ids must be strings, integers, "
        "booleans, dates or datetimes, whose text is the same in every engine. Cast 'id' to "
        "one of those (e.g. a string)."
    )
    with pytest.raises(errors.ColumnTypeError) as raised:
        store.write("clips", frame)
    assert str(raised.value) == message
    with pytest.raises(errors.ColumnTypeError):
        store.resolve_update("clips", samples=frame)
    assert store.read("clips").height == 0
    assert store.last_write_seq() == 0
