"""Golden vectors: one hash, the same hex from Python, Polars and DuckDB."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metaxy_core import hash_parts, hash_string
from metaxy_core.hashing import (
    HASH_ALGORITHM,
    NULL_SENTINEL,
    SEED,
    SEPARATOR,
    canonical,
    polars_hash,
    register_duckdb_hash,
    sql_hash,
)

# Standard XXH64 with seed 42 (what Spark's xxhash64 computes for one string column).
XXH64_SEED42 = {
    "abc": "13c1d910702770e6",
    "": "98b1582b0977e704",
}

# hash_string: the UTF-8 bytes of the string, hashed as they are.
GOLDEN_STRINGS = {
    **XXH64_SEED42,
    "a": "88e4fe59adf7b0cc",
    "video/raw": "8ba4d5f362b660f8",
    "héllo wörld": "69bfed4b526a95af",
    "日本語": "f767a895aff219e9",
    "🎥🎧": "4a58de4b6458d06b",
    SEPARATOR: "9cd8117ca61c7281",
    NULL_SENTINEL: "8fb52eaf6ab51ca4",
}

# hash_parts: (parts, canonical string, hex). None is the null sentinel; "" is an empty part.
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
HEX16 = re.compile(r"^[0-9a-f]{16}$")


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
    assert HASH_ALGORITHM == "xxhash64-seed42-hex16"


@pytest.mark.parametrize(("value", "expected"), GOLDEN_STRINGS.items(), ids=repr)
def test_hash_string(value: str, expected: str) -> None:
    assert hash_string(value) == expected


@pytest.mark.parametrize(("parts", "text", "expected"), GOLDEN_PARTS, ids=PART_IDS)
def test_hash_parts(parts: list[str | None], text: str, expected: str) -> None:
    assert canonical(parts) == text
    assert hash_parts(parts) == expected
    assert hash_parts(parts) == hash_string(text)
    assert HEX16.match(expected)


def test_spark_reading_of_the_hash() -> None:
    # Spark returns the same 64 bits as a signed integer.
    assert int.from_bytes(bytes.fromhex(hash_string("abc")), "big", signed=True) == (
        1423657621850124518
    )


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
def test_polars_literals(row_hash: str, parts: list[str | None], text: str, expected: str) -> None:
    exprs = [pl.lit(p, dtype=pl.String) for p in parts]
    assert pl.select(h=polars_hash(exprs)).item() == expected


def golden_frame() -> pl.DataFrame:
    """The golden part lists as rows of three nullable string columns (padded with "z")."""
    rows = [[*parts, *["z"] * (3 - len(parts))] for parts, _, _ in GOLDEN_PARTS]
    columns = {f"p{j}": [row[j] for row in rows] for j in range(3)}
    return pl.DataFrame(columns, schema=dict.fromkeys(columns, pl.String)).with_row_index("i")


def padded_expected() -> list[str]:
    return [hash_parts([*parts, *["z"] * (3 - len(parts))]) for parts, _, _ in GOLDEN_PARTS]


def test_polars_columns_eager_lazy_and_chunked(row_hash: str) -> None:
    frame = golden_frame()
    expr = polars_hash([pl.col("p0"), pl.col("p1"), pl.col("p2")])
    expected = padded_expected()
    assert frame.select(h=expr)["h"].to_list() == expected
    assert frame.lazy().select(h=expr).collect()["h"].to_list() == expected
    assert frame.lazy().select(h=expr).collect(engine="streaming")["h"].to_list() == expected
    chunked = pl.concat([frame[:4], frame[4:]], rechunk=False)
    assert chunked.n_chunks() == 2
    assert chunked.select(h=expr)["h"].to_list() == expected
    assert frame.head(0).select(h=expr)["h"].to_list() == []
    assert frame.select(h=expr).schema == pl.Schema({"h": pl.String})


def test_polars_does_not_modify_the_frame() -> None:
    frame = golden_frame()
    before = frame.clone()
    frame.with_columns(h=polars_hash([pl.col("p0"), pl.col("p1")]))
    assert frame.equals(before)


# -- DuckDB -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("parts", "text", "expected"), GOLDEN_PARTS, ids=PART_IDS)
def test_duckdb_literals_and_parameters(
    duck: duckdb.DuckDBPyConnection, parts: list[str | None], text: str, expected: str
) -> None:
    literal_sql = sql_hash([sql_literal(p) for p in parts])
    assert duck.execute(f"SELECT {literal_sql}").fetchone() == (expected,)
    param_sql = sql_hash([f"CAST(${i + 1} AS VARCHAR)" for i in range(len(parts))])
    assert duck.execute(f"SELECT {param_sql}", parts).fetchone() == (expected,)


def test_duckdb_columns(duck: duckdb.DuckDBPyConnection) -> None:
    frame = golden_frame().to_arrow()  # noqa: F841 (read by DuckDB's replacement scan)
    sql = sql_hash(["p0", "p1", "p2"])
    rows = duck.execute(f"SELECT {sql} FROM frame ORDER BY i").fetchall()
    assert [r[0] for r in rows] == padded_expected()
    assert duck.execute(f"SELECT {sql} FROM frame WHERE false").fetchall() == []


def test_duckdb_many_rows_and_nulls(duck: duckdb.DuckDBPyConnection) -> None:
    # More rows than one DuckDB vector (2048), so the UDF runs on several batches.
    n = 5000
    a = [None if i % 7 == 0 else f"a{i}" for i in range(n)]
    b = [None if i % 5 == 0 else ("" if i % 3 == 0 else f"ü{i}") for i in range(n)]
    frame = pl.DataFrame({"i": range(n), "a": a, "b": b})
    expected = [hash_parts([x, y]) for x, y in zip(a, b, strict=True)]
    duck.execute("CREATE OR REPLACE TEMP TABLE many AS SELECT * FROM frame")
    rows = duck.execute(f"SELECT {sql_hash(['a', 'b'])} FROM many ORDER BY i").fetchall()
    assert [r[0] for r in rows] == expected
    assert frame.select(h=polars_hash([pl.col("a"), pl.col("b")]))["h"].to_list() == expected


def test_register_is_idempotent(duck: duckdb.DuckDBPyConnection) -> None:
    register_duckdb_hash(duck)
    register_duckdb_hash(duck)
    sql = sql_hash(["'abc'"])
    assert duck.execute(f"SELECT {sql}").fetchone() == ("13c1d910702770e6",)


def test_sql_hash_text() -> None:
    assert sql_hash(["a", "b"]) == (
        "metaxy_xxh64(concat_ws(chr(31), coalesce(CAST(a AS VARCHAR), chr(30)), "
        "coalesce(CAST(b AS VARCHAR), chr(30))))"
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
    assert con.execute(f"SELECT {sql}").fetchone() == (hash_parts(["abc", None]),)
    con.close()
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded or installed


# -- every engine agrees, on any input --------------------------------------------------------

part = st.one_of(st.none(), st.text(max_size=12))


@st.composite
def part_rows(draw: st.DrawFn) -> list[list[str | None]]:
    width = draw(st.integers(min_value=1, max_value=4))
    return draw(st.lists(st.lists(part, min_size=width, max_size=width), min_size=1, max_size=8))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=part_rows())
def test_python_polars_and_duckdb_agree(
    duck: duckdb.DuckDBPyConnection, row_hash: str, rows: list[list[str | None]]
) -> None:
    width = len(rows[0])
    names = [f"p{j}" for j in range(width)]
    frame = pl.DataFrame(
        {name: [row[j] for row in rows] for j, name in enumerate(names)},
        schema=dict.fromkeys(names, pl.String),
    ).with_row_index("i")
    expected = [hash_parts(row) for row in rows]
    assert frame.select(h=polars_hash([pl.col(n) for n in names]))["h"].to_list() == expected
    arrow = frame.to_arrow()  # noqa: F841 (read by DuckDB's replacement scan)
    got = duck.execute(f"SELECT {sql_hash(names)} FROM arrow ORDER BY i").fetchall()
    assert [r[0] for r in got] == expected
