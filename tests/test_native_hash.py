"""The C row hash: the same bits as ``hash_parts`` for every Arrow string layout, and the same
bits as the Polars fallback that runs where it is not built."""

from __future__ import annotations

import random
import time
from itertools import pairwise

import polars as pl
import pyarrow as pa
import pytest
import xxhash

from metaxy_core import columns as c
from metaxy_core import hash_parts, native_hash
from metaxy_core.engines import classify
from metaxy_core.hashing import arrow_hash, polars_hash
from metaxy_core.plan import build_plan, input_column
from metaxy_core.testing import make_store, root_samples
from tests.reference import reference_graph

DV_AUDIO = c.data_version_column("audio")

LAYOUTS = [pa.string(), pa.large_string(), pa.string_view()]
PREFIXES: list[list[str]] = [[], [""], ["recipe"], ["a1b2", "é"]]


def random_values(n: int, seed: int) -> list[str | None]:
    """Nulls, empty strings, separators, multi-byte characters, and lengths around the XXH64
    stripe (32 bytes), the inline view limit (12) and beyond the C block buffer (64 KiB)."""
    rnd = random.Random(seed)
    lengths = [1, 4, 8, 12, 13, 16, 31, 32, 33, 63, 64, 65, 200]
    values: list[str | None] = []
    for _ in range(n):
        roll = rnd.random()
        if roll < 0.1:
            values.append(None)
        elif roll < 0.15:
            values.append("")
        else:
            length = rnd.choice(lengths)
            values.append("".join(rnd.choice("ab\x1f\x1eé€😀09") for _ in range(length)))
    return values


def chunked(values: list[str | None], layout: pa.DataType, cuts: list[int]) -> pa.ChunkedArray:
    bounds = [0, *cuts, len(values)]
    return pa.chunked_array([pa.array(values[a:b], layout) for a, b in pairwise(bounds)], layout)


def test_the_library_was_built() -> None:
    # The install compiles it (setup.py); if this fails, gcc was missing or the build broke,
    # and every hash runs on the slower Polars fallback.
    assert native_hash.available(), "metaxy_core/_native/row_hash.c was not built: pip install -e ."


@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
@pytest.mark.parametrize("prefix", PREFIXES, ids=repr)
def test_every_layout_and_prefix_matches_hash_parts(layout: pa.DataType, prefix: list[str]) -> None:
    a, b = random_values(700, 1), random_values(700, 2)
    # Different chunk boundaries per column: the rows must still line up.
    got = arrow_hash(prefix, [chunked(a, layout, [100, 400]), chunked(b, layout, [250])])
    assert got.to_pylist() == [hash_parts([*prefix, x, y]) for x, y in zip(a, b, strict=True)]
    assert got.type == pa.string_view()
    assert [len(c) for c in got.chunks] == [100, 150, 150, 300]  # chunked like the input


def test_sliced_arrays_and_polars_views() -> None:
    values = random_values(300, 3)
    views = pl.Series(values, dtype=pl.String).to_arrow(compat_level=pl.CompatLevel.newest())
    assert views.type == pa.string_view()
    sliced = pa.chunked_array([views.slice(7, 200)])
    plain = pa.chunked_array([pa.array(values).slice(7, 200)])
    got = arrow_hash(["r"], [sliced, plain])
    assert got.to_pylist() == [hash_parts(["r", v, v]) for v in values[7:207]]


def test_a_value_longer_than_the_block_buffer() -> None:
    long = "x" * 200_000
    got = arrow_hash([], [pa.chunked_array([[long, "y", long]])])
    assert got.to_pylist() == [hash_parts([long]), hash_parts(["y"]), hash_parts([long])]


def test_many_rows_spread_over_threads() -> None:
    # More rows than one C call takes, in chunks of uneven length.
    values: list[str | None] = [f"{i:016x}" for i in range(200_003)]
    column = chunked(values, pa.string(), [70_000, 70_001])
    got = arrow_hash(["p"], [column])
    assert len(got) == 200_003
    for i in (0, 65_535, 65_536, 70_000, 140_000, 200_002):
        assert got[i].as_py() == hash_parts(["p", values[i]])


def test_no_rows() -> None:
    assert arrow_hash(["p"], [pa.chunked_array([], pa.string())]).to_pylist() == []


def test_the_canonical_form_is_the_callers() -> None:
    column = pa.chunked_array([["b", None]])
    got = native_hash.hash_columns(["a"], [column], separator="|", sentinel="~", seed=7)
    expected = [xxhash.xxh64_hexdigest(s.encode(), seed=7) for s in ("a|b", "a|~")]
    assert got.to_pylist() == expected
    with pytest.raises(ValueError, match="must be one ASCII character each"):
        native_hash.hash_columns([], [column], separator="||", sentinel="~", seed=7)


def test_a_column_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot hash a column of Arrow type int64; cast it"):
        arrow_hash([], [pa.chunked_array([[1, 2]])])


# -- polars_hash: the C path and the Polars fallback give the same bits ---------------------------


def test_polars_hash_constants_then_columns(row_hash: str) -> None:
    values = random_values(500, 4)
    frame = pl.DataFrame({"a": values, "n": list(range(500))})
    got = frame.select(
        h=polars_hash(["r1", "", pl.col("a"), pl.col("n"), "tail"]),
        c=polars_hash(["only", "constants"]),
    )
    expected = [hash_parts(["r1", "", v, str(i), "tail"]) for i, v in enumerate(values)]
    assert got["h"].to_list() == expected
    assert got["c"].to_list() == [hash_parts(["only", "constants"])] * 500
    assert got.schema == pl.Schema({"h": pl.String, "c": pl.String})


def test_polars_hash_keeps_the_frame_chunks(row_hash: str) -> None:
    frame = pl.concat([pl.DataFrame({"a": ["x", None]}), pl.DataFrame({"a": ["y"]})], rechunk=False)
    got = frame.with_columns(h=polars_hash(["r", pl.col("a")]))
    assert got["h"].to_list() == [hash_parts(["r", v]) for v in ["x", None, "y"]]
    if row_hash == "native":  # hashes come out chunked like the frame: nothing is copied
        assert got["h"].n_chunks() == 2


def _stored_after_a_pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    """Every feature of the reference graph written, then 3 root samples changed: the stored
    rows and the increments, under whichever row hash is active."""
    graph = reference_graph()
    store = make_store("duckdb-file-sql", graph, tmp_path_factory.mktemp("store"))
    ids = [f"v{i}" for i in range(40)]
    raw = root_samples("video_id", ids, audio=[f"a{i}" for i in range(40)], frames=["f"] * 40)
    store.write("video/raw", raw)
    features = ("video/crop", "vision/faces", "audio/transcript", "train/manifest")
    for feature in features:
        store.write(feature, store.resolve_update(feature).to_compute())
    store.write("video/raw", raw.head(3).with_columns(pl.lit("changed").alias(DV_AUDIO)))
    seen = {
        f: store.read(f).drop(c.WRITTEN_AT, c.RUN_ID).sort("video_id")
        for f in graph.topological_order()
    }
    for feature in features:
        seen[f"{feature} stale"] = store.resolve_update(feature).stale.sort("video_id")
    return seen


def test_a_pipeline_stores_the_same_bits_on_both_paths(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    native = _stored_after_a_pipeline(tmp_path_factory)
    monkeypatch.setattr(native_hash, "_LIB", None)
    fallback = _stored_after_a_pipeline(tmp_path_factory)
    assert native.keys() == fallback.keys()
    for name, frame in native.items():
        assert frame.equals(fallback[name]), name
    assert native["audio/transcript stale"].height == 3


def test_blocks_of_long_values() -> None:
    # 20 values of 150 KB: the C code starts a new block once one holds 1 MiB.
    values: list[str | None] = [chr(97 + i) * 150_000 for i in range(20)]
    got = arrow_hash(["p"], [pa.chunked_array([values])])
    assert got.to_pylist() == [hash_parts(["p", v]) for v in values]


def test_an_error_in_one_job_waits_for_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    # The jobs write through raw addresses: hash_columns must not return (or raise, which
    # frees its buffers) while any job still runs.
    finished: list[int] = []

    def call(job: native_hash._Job, hexes: object, views: object) -> None:
        if job.first == 0:
            raise MemoryError("out of memory while hashing rows")
        time.sleep(0.2)
        finished.append(job.first)

    monkeypatch.setattr(native_hash, "_call", call)
    values: list[str | None] = ["x"] * (3 * 65_536)
    with pytest.raises(MemoryError, match="out of memory while hashing rows"):
        arrow_hash([], [pa.chunked_array([values])])
    assert sorted(finished) == [65_536, 131_072]


def test_hash_arrow_gives_the_same_frame_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = reference_graph()
    plan = build_plan(graph, "video/crop", upstream_columns={"video/raw": []})
    n = 300
    audio, frames = random_values(n, 5), random_values(n, 6)
    rows = pa.table(
        {
            "video_id": [f"v{i}" for i in range(n)],
            c.upstream_data_version_column("video/raw"): [f"u{i}" for i in range(n)],
            input_column(0, "audio"): audio,
            input_column(0, "frames"): frames,
        }
    )
    native = classify.hash_arrow(plan, rows).collect()
    monkeypatch.setattr(native_hash, "_LIB", None)
    fallback = classify.hash_arrow(plan, rows).collect()
    # Input columns only the hash reads stay in Arrow on the C path.
    assert native.equals(fallback.drop(input_column(0, "audio"), input_column(0, "frames")))
    recipes = {f.field: f.recipe for f in plan.fields}
    assert native[c.provenance_column("audio")].to_list() == [
        hash_parts([recipes["audio"], a]) for a in audio
    ]
