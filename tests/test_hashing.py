"""Golden vectors: one hash, the same signed 64-bit integer from Python, Polars, DuckDB, every
engine and the write path, and equal to XXH64 (seed 42) computed here with ``xxhash`` alone."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metaxy_core import (
    DuckDBMetadataStore,
    FeatureDep,
    FeatureGraph,
    FeatureSpec,
    FieldDep,
    FieldRef,
    FieldSpec,
    InMemoryMetadataStore,
    MetadataStore,
    hash_parts,
    hash_string,
    to_hex,
)
from metaxy_core.engines import classify
from metaxy_core.hashing import (
    HASH_ALGORITHM,
    NULL_SENTINEL,
    SEED,
    SEPARATOR,
    canonical,
    from_hex,
    polars_hash,
    polars_hash_texts,
    polars_hex,
    register_duckdb_hash,
    sql_hash,
    sql_hex,
)
from metaxy_core.plan import FieldPlan, ResolvePlan

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def xxh(text: str) -> int:
    """The reference: XXH64 (seed 42) of the UTF-8 bytes, its 8 digest bytes read as a signed
    big-endian integer (what Spark's ``xxhash64`` returns)."""
    return int.from_bytes(xxhash.xxh64(text.encode(), seed=42).digest(), "big", signed=True)


def hex16(value: int) -> str:
    """How the reference writes a 64-bit hash inside a canonical string."""
    return format(value % 2**64, "016x")


# Standard XXH64 with seed 42 (what Spark's xxhash64 computes for one string column).
XXH64_SEED42 = {"abc": 1423657621850124518, "": -7444071767201028348}

# hash_string: the UTF-8 bytes of the string, hashed as they are (hex of the unsigned bits).
GOLDEN_STRINGS = {
    "abc": "13c1d910702770e6",
    "": "98b1582b0977e704",
    "a": "88e4fe59adf7b0cc",
    "video/raw": "8ba4d5f362b660f8",
    "héllo wörld": "69bfed4b526a95af",
    "日本語": "f767a895aff219e9",
    "🎥🎧": "4a58de4b6458d06b",
    SEPARATOR: "9cd8117ca61c7281",
    NULL_SENTINEL: "8fb52eaf6ab51ca4",
}

# hash_parts of text: (parts, canonical string, hex). None is the sentinel; "" an empty part.
GOLDEN_PARTS: list[tuple[list[str | None], str, str]] = [
    (["abc"], "abc", "13c1d910702770e6"),
    ([""], "", "98b1582b0977e704"),
    (["a", "b"], "a\x1fb", "6a835b976ec3fa9e"),
    (["a", None], "a\x1f\x1e", "ea6abf369e7376fa"),
    ([None], "\x1e", "8fb52eaf6ab51ca4"),
    ([None, None], "\x1e\x1f\x1e", "1b955315949220c4"),
    (["", ""], "\x1f", "9cd8117ca61c7281"),
    (["a", "", None], "a\x1f\x1f\x1e", "4c9e652ffaf78650"),
    (["video/raw", "audio", "1"], "video/raw\x1faudio\x1f1", "44ce798cc1fe4af5"),
    (["日本語", "🎥", None], "日本語\x1f🎥\x1f\x1e", "00b11bd05905988a"),
    (["a\x00b", "c"], "a\x00b\x1fc", "fc9c155ead4783f0"),
]
PART_IDS = [repr(parts) for parts, _, _ in GOLDEN_PARTS]

# A recipe and 64-bit hashes (versions) with nulls: hashes are written as 16 hex digits.
RECIPE = "44ce798cc1fe4af5"
VERSION_ROWS: list[tuple[int | None, int | None]] = [
    (0, 1),
    (-1, 2**63 - 1),
    (-(2**63), 1423657621850124518),
    (None, -7444071767201028348),
    (None, None),
    (255, 0),
]


def version_text(row: Sequence[int | None]) -> str:
    return SEPARATOR.join([RECIPE, *(NULL_SENTINEL if v is None else hex16(v) for v in row)])


def sql_literal(part: str | None) -> str:
    if part is None:
        return "CAST(NULL AS VARCHAR)"
    # DuckDB before 2.0 ends a string literal at a NUL character: spell NUL as chr(0).
    return " || chr(0) || ".join("'" + p.replace("'", "''") + "'" for p in part.split("\x00"))


@pytest.fixture(scope="module")
def duck(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    # Offline by construction: no auto-install or auto-load, and an empty extension directory,
    # so the hash can only work if it needs no extension.
    extensions = Path(tmp_path_factory.mktemp("duckdb_extensions"))
    con = duckdb.connect(
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "extension_directory": str(extensions),
        }
    )
    register_duckdb_hash(con)
    yield con
    con.close()


# -- the algorithm ----------------------------------------------------------------------------


def test_constants() -> None:
    assert SEED == 42
    assert SEPARATOR == "\x1f"
    assert NULL_SENTINEL == "\x1e"
    assert HASH_ALGORITHM == "xxhash64-seed42-int64"


@pytest.mark.parametrize(("value", "expected"), XXH64_SEED42.items(), ids=repr)
def test_seed_42_is_sparks_signed_xxhash64(value: str, expected: int) -> None:
    assert hash_string(value) == expected == xxh(value)


@pytest.mark.parametrize(("value", "expected"), GOLDEN_STRINGS.items(), ids=repr)
def test_hash_string(value: str, expected: str) -> None:
    assert hash_string(value) == xxh(value)
    assert to_hex(hash_string(value)) == expected
    assert from_hex(expected) == hash_string(value)


@pytest.mark.parametrize(("parts", "text", "expected"), GOLDEN_PARTS, ids=PART_IDS)
def test_hash_parts(parts: list[str | None], text: str, expected: str) -> None:
    assert canonical(parts) == text
    assert hash_parts(parts) == xxh(text) == hash_string(text)
    assert to_hex(hash_parts(parts)) == expected


@pytest.mark.parametrize("row", VERSION_ROWS, ids=repr)
def test_hashes_are_parts_as_their_hex(row: tuple[int | None, int | None]) -> None:
    assert canonical([RECIPE, *row]) == version_text(row)
    assert hash_parts([RECIPE, *row]) == xxh(version_text(row))


def test_to_hex_and_back() -> None:
    assert to_hex(0) == "0000000000000000"
    assert to_hex(-1) == "ffffffffffffffff"
    assert to_hex(-(2**63)) == "8000000000000000"
    assert [from_hex(to_hex(v)) for v in (0, -1, 2**63 - 1, -(2**63))] == [
        0, -1, 2**63 - 1, -(2**63)
    ]  # fmt: skip


def test_distinct_part_lists_give_distinct_hashes() -> None:
    hashes = {
        hash_parts(p)
        for p in ([], [""], [None], ["", ""], ["", None], [None, ""], ["ab"], ["a", "b"])
    }
    # [] and [""] are both the empty string; every other list differs.
    assert len(hashes) == 7
    assert hash_parts([]) == hash_parts([""])


# -- Polars -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("parts", "text", "expected"), GOLDEN_PARTS, ids=PART_IDS)
def test_polars_text_literals(parts: list[str | None], text: str, expected: str) -> None:
    exprs = [pl.lit(p, dtype=pl.String) for p in parts]
    assert pl.select(h=polars_hash_texts(exprs)).item() == xxh(text)


def version_frame() -> pl.DataFrame:
    a, b = zip(*VERSION_ROWS, strict=True)
    return pl.DataFrame({"a": a, "b": b}, schema={"a": pl.Int64, "b": pl.Int64})


def test_polars_versions_eager_lazy_chunked_and_without_nulls() -> None:
    frame = version_frame()
    expr = polars_hash([RECIPE, pl.col("a"), pl.col("b")])
    expected = [xxh(version_text(row)) for row in VERSION_ROWS]
    assert frame.select(h=expr)["h"].to_list() == expected
    assert frame.lazy().select(h=expr).collect()["h"].to_list() == expected
    assert frame.lazy().select(h=expr).collect(engine="streaming")["h"].to_list() == expected
    chunked = pl.concat([frame[:2], frame[2:]], rechunk=False)
    assert chunked.n_chunks() == 2
    assert chunked.select(h=expr)["h"].to_list() == expected
    # Without nulls every canonical string has one width (the buffer path).
    full = frame.drop_nulls()
    assert full.height == 4
    assert full.select(h=expr)["h"].to_list() == [
        xxh(version_text(row)) for row in VERSION_ROWS if None not in row
    ]
    assert frame.head(0).select(h=expr)["h"].to_list() == []
    assert frame.select(h=expr).schema == pl.Schema({"h": pl.Int64})


def test_polars_versions_over_many_blocks() -> None:
    # More rows than one block of the buffer path (2**17), hashed on several threads.
    n = 300_001
    frame = pl.DataFrame({"a": range(-n, 0), "b": range(n)}).with_columns(
        b=pl.col("b") * 2654435761 * 2654435761
    )
    got = frame.select(h=polars_hash([RECIPE, pl.col("a"), pl.col("b")]))["h"]
    for i in (0, 1, 2**17 - 1, 2**17, 2**17 + 1, 2**18, n - 1):
        a, b = frame.row(i)
        assert got[i] == xxh(version_text((a, b))), i


def test_record_batches_are_hashed_as_they_arrive_with_nulls_in_a_later_batch() -> None:
    # The DuckDB engine hands hash_arrow a reader; batch 1 has no nulls (the buffer path),
    # batch 2 has a null input: every row still gets the reference hash.
    plan = ResolvePlan(
        feature="f",
        id_columns=("id",),
        key=("id",),
        upstreams=(),
        fields=(FieldPlan("out", RECIPE, ("a", "b")), FieldPlan("a_only", RECIPE, ("a",))),
        passthrough=(),
        change_inputs=(),
    )
    rows = [(i, -i * 7919, i * 2654435761) for i in range(40_000)]
    rows += [(40_000 + i, a, b) for i, (a, b) in enumerate(VERSION_ROWS)]
    table = pa.table(
        {n: pa.array([r[k] for r in rows], pa.int64()) for k, n in enumerate(("id", "a", "b"))}
    )
    for batches in ([table.slice(0, 40_000), table.slice(40_000)], [table.slice(0, 40_000)]):
        combined = pa.Table.from_batches([b for t in batches for b in t.to_batches()])
        reader = pa.RecordBatchReader.from_batches(table.schema, combined.to_batches())
        got = classify.hash_arrow(plan, reader).collect()
        expected = [(xxh(version_text((a, b))), xxh(version_text((a,)))) for _, a, b in rows]
        assert got.height == combined.num_rows
        assert (
            list(zip(got["metaxy_provenance__out"], got["metaxy_provenance__a_only"], strict=True))
            == (expected[: combined.num_rows])
        )


def test_polars_hex() -> None:
    rendered = version_frame().select(polars_hex(pl.col("a")))["a"].to_list()
    assert rendered == [None if a is None else hex16(a) for a, _ in VERSION_ROWS]


def test_polars_does_not_modify_the_frame() -> None:
    frame = version_frame()
    before = frame.clone()
    frame.with_columns(h=polars_hash([pl.col("a"), pl.col("b")]))
    assert frame.equals(before)


def test_constants_must_come_first() -> None:
    with pytest.raises(ValueError, match="string constants must come before the expressions"):
        polars_hash([pl.col("a"), "x"])


# -- DuckDB -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("parts", "text", "expected"), GOLDEN_PARTS, ids=PART_IDS)
def test_duckdb_literals_and_parameters(
    duck: duckdb.DuckDBPyConnection, parts: list[str | None], text: str, expected: str
) -> None:
    literal_sql = sql_hash([sql_literal(p) for p in parts])
    assert duck.execute(f"SELECT {literal_sql}").fetchone() == (xxh(text),)
    param_sql = sql_hash([f"CAST(${i + 1} AS VARCHAR)" for i in range(len(parts))])
    assert duck.execute(f"SELECT {param_sql}", parts).fetchone() == (xxh(text),)


def test_duckdb_versions(duck: duckdb.DuckDBPyConnection) -> None:
    frame = version_frame().with_row_index("i").to_arrow()  # noqa: F841 (replacement scan)
    sql = sql_hash([sql_literal(RECIPE), sql_hex("a"), sql_hex("b")])
    rows = duck.execute(f"SELECT {sql} FROM frame ORDER BY i").fetchall()
    assert [r[0] for r in rows] == [xxh(version_text(row)) for row in VERSION_ROWS]
    assert duck.execute(f"SELECT {sql} FROM frame WHERE false").fetchall() == []


def test_duckdb_many_rows_and_nulls(duck: duckdb.DuckDBPyConnection) -> None:
    # More rows than one DuckDB vector (2048), so the UDF runs on several batches.
    n = 5000
    a = [None if i % 7 == 0 else f"a{i}" for i in range(n)]
    b = [None if i % 5 == 0 else ("" if i % 3 == 0 else f"ü{i}") for i in range(n)]
    frame = pl.DataFrame({"i": range(n), "a": a, "b": b})
    expected = [xxh(canonical([x, y])) for x, y in zip(a, b, strict=True)]
    duck.execute("CREATE OR REPLACE TEMP TABLE many AS SELECT * FROM frame")
    rows = duck.execute(f"SELECT {sql_hash(['a', 'b'])} FROM many ORDER BY i").fetchall()
    assert [r[0] for r in rows] == expected
    assert frame.select(h=polars_hash_texts([pl.col("a"), pl.col("b")]))["h"].to_list() == expected


def test_register_is_idempotent(duck: duckdb.DuckDBPyConnection) -> None:
    register_duckdb_hash(duck)
    register_duckdb_hash(duck)
    sql = sql_hash(["'abc'"])
    assert duck.execute(f"SELECT {sql}").fetchone() == (1423657621850124518,)


def test_sql_hash_text() -> None:
    assert sql_hash(["a", sql_hex("b")]) == (
        "metaxy_xxh64(concat_ws(chr(31), coalesce(CAST(a AS VARCHAR), chr(30)), "
        "coalesce(CAST(printf('%016x', b) AS VARCHAR), chr(30))))"
    )


def test_hash_needs_no_duckdb_extension(tmp_path: Path) -> None:
    con = duckdb.connect(
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "extension_directory": str(tmp_path),
        }
    )
    register_duckdb_hash(con)
    sql = sql_hash(["'abc'", "NULL"])
    assert con.execute(f"SELECT {sql}").fetchone() == (xxh("abc\x1f\x1e"),)
    con.close()
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded or installed


# -- every engine and path gives the same provenance ------------------------------------------

GRAPH = FeatureGraph(
    [
        FeatureSpec(key="clips", id_columns=["id"], fields=["audio", "frames"]),
        FeatureSpec(
            key="scores",
            id_columns=["id"],
            deps=[FeatureDep("clips")],
            fields=[
                FieldSpec(key="both", deps=[FieldDep(feature="clips", fields=["frames", "audio"])])
            ],
        ),
    ]
)
# A user's data versions: text (e.g. a file checksum) is stored as the hash of the text;
# integers are taken as they are.
CLIPS = pl.DataFrame(
    {
        "id": ["c1", "c2", "c3"],
        "metaxy_data_version__audio": ["sha256:aa", "", "日本語"],
        "metaxy_data_version__frames": [7, -1, 2**63 - 1],
    }
)


def expected_rows() -> dict[str, dict[str, int]]:
    """Every hash of every sample, computed here from the canonical strings with xxhash."""
    recipe = {
        f: GRAPH.versions.recipes[FieldRef(k, f)]
        for k, f in [("clips", "audio"), ("clips", "frames"), ("scores", "both")]
    }
    out = {}
    for sid, audio_text, frames in CLIPS.iter_rows():
        audio = xxh(audio_text)
        p_audio = xxh(f"{recipe['audio']}\x1f{hex16(audio)}")
        p_frames = xxh(f"{recipe['frames']}\x1f{hex16(frames)}")
        # "both" reads audio, then frames: upstream fields in sorted order, whatever the
        # order they were declared in.
        p_both = xxh(f"{recipe['both']}\x1f{hex16(audio)}\x1f{hex16(frames)}")
        out[sid] = {
            "dv_audio": audio,
            "dv_frames": frames,
            "p_audio": p_audio,
            "p_frames": p_frames,
            "provenance": xxh(f"{hex16(p_audio)}\x1f{hex16(p_frames)}"),
            "data_version": xxh(f"{hex16(audio)}\x1f{hex16(frames)}"),
            "p_both": p_both,
            "both_provenance": xxh(hex16(p_both)),
        }
    return out


def stores(tmp_path: Path) -> list[MetadataStore]:
    return [
        DuckDBMetadataStore(GRAPH, tmp_path / "duck.duckdb", engine="duckdb"),
        DuckDBMetadataStore(GRAPH, tmp_path / "polars.duckdb", engine="polars"),
        InMemoryMetadataStore(GRAPH),
    ]


def test_every_engine_and_path_gives_the_reference_provenance(tmp_path: Path) -> None:
    want = expected_rows()
    for store in stores(tmp_path):
        # Root: the increment of the given samples, and what a write stores.
        root_new = store.resolve_update("clips", samples=CLIPS).new.sort("id")
        store.write("clips", CLIPS)
        roots = store.read("clips").sort("id")
        for frame in (root_new, roots):
            assert frame["metaxy_provenance__audio"].to_list() == [
                want[i]["p_audio"] for i in sorted(want)
            ], store
            assert frame["metaxy_provenance__frames"].to_list() == [
                want[i]["p_frames"] for i in sorted(want)
            ], store
        assert roots.select(
            "metaxy_data_version__audio",
            "metaxy_data_version__frames",
            "metaxy_provenance",
            "metaxy_data_version",
        ).rows() == [
            (w["dv_audio"], w["dv_frames"], w["provenance"], w["data_version"])
            for w in (want[i] for i in sorted(want))
        ], store
        assert roots.schema["metaxy_provenance"] == pl.Int64
        # Downstream: the engine's expected provenance, the write of it, and a write that
        # computes it from the current upstream rows (no provenance in the frame).
        new = store.resolve_update("scores").new.sort("id")
        assert new["metaxy_provenance__both"].to_list() == [want[i]["p_both"] for i in sorted(want)]
        store.write("scores", new.select("id").head(1))
        store.write("scores", new.tail(2))
        scores = store.read("scores").sort("id")
        assert scores.select(
            "metaxy_provenance__both", "metaxy_data_version__both", "metaxy_provenance"
        ).rows() == [
            (w["p_both"], w["p_both"], w["both_provenance"])
            for w in (want[i] for i in sorted(want))
        ], store
        assert store.count_update("scores").total == 0


# -- every path agrees, on any input ----------------------------------------------------------

part = st.one_of(st.none(), st.text(max_size=12))


@st.composite
def part_rows(draw: st.DrawFn) -> list[list[str | None]]:
    width = draw(st.integers(min_value=1, max_value=4))
    return draw(st.lists(st.lists(part, min_size=width, max_size=width), min_size=1, max_size=8))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=part_rows())
def test_python_polars_and_duckdb_agree_on_text(
    duck: duckdb.DuckDBPyConnection, rows: list[list[str | None]]
) -> None:
    width = len(rows[0])
    names = [f"p{j}" for j in range(width)]
    frame = pl.DataFrame(
        {name: [row[j] for row in rows] for j, name in enumerate(names)},
        schema=dict.fromkeys(names, pl.String),
    ).with_row_index("i")
    expected = [xxh(canonical(row)) for row in rows]
    assert [hash_parts(row) for row in rows] == expected
    assert frame.select(h=polars_hash_texts([pl.col(n) for n in names]))["h"].to_list() == expected
    arrow = frame.to_arrow()  # noqa: F841 (read by DuckDB's replacement scan)
    got = duck.execute(f"SELECT {sql_hash(names)} FROM arrow ORDER BY i").fetchall()
    assert [r[0] for r in got] == expected


@st.composite
def version_rows(draw: st.DrawFn) -> tuple[list[str], list[list[int | None]]]:
    prefix = draw(st.lists(st.text(max_size=8), max_size=2))
    width = draw(st.integers(min_value=1, max_value=4))
    value = st.one_of(st.none(), INT64) if draw(st.booleans()) else INT64
    rows = draw(st.lists(st.lists(value, min_size=width, max_size=width), max_size=8))
    return prefix, rows


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=version_rows())
def test_python_polars_and_duckdb_agree_on_versions(
    duck: duckdb.DuckDBPyConnection, case: tuple[list[str], list[list[int | None]]]
) -> None:
    prefix, rows = case
    width = len(rows[0]) if rows else 1
    names = [f"v{j}" for j in range(width)]
    frame = pl.DataFrame(
        {name: [row[j] for row in rows] for j, name in enumerate(names)},
        schema=dict.fromkeys(names, pl.Int64),
    ).with_row_index("i")
    texts = [
        SEPARATOR.join([*prefix, *(NULL_SENTINEL if v is None else hex16(v) for v in row)])
        for row in rows
    ]
    expected = [xxh(t) for t in texts]
    assert [hash_parts([*prefix, *row]) for row in rows] == expected
    got = frame.select(h=polars_hash([*prefix, *map(pl.col, names)]))["h"].to_list()
    assert got == expected
    arrow = frame.to_arrow()  # noqa: F841 (read by DuckDB's replacement scan)
    sql = sql_hash([*map(sql_literal, prefix), *map(sql_hex, names)])
    assert [r[0] for r in duck.execute(f"SELECT {sql} FROM arrow ORDER BY i").fetchall()] == (
        expected
    )
