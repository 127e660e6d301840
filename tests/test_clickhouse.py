"""What is particular to the ClickHouse store (the shared golden suites run it as the
``clickhouse`` store kind): native hashes bit for bit, commits, write sequences, URIs, limits."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import polars as pl
import pytest

from metaxy_core import ClickHouseMetadataStore, DuckDBMetadataStore, errors
from metaxy_core import columns as c
from metaxy_core.hashing import hash_parts, to_hex
from metaxy_core.store._clickhouse_client import ChdbClient
from metaxy_core.testing import assert_same_rows, root_samples
from tests.reference import reference_graph


def _raw(ids: list[str], audio: str = "a", frames: str = "f") -> pl.DataFrame:
    return root_samples(
        "video_id", ids, audio=[audio + i for i in ids], frames=[frames + i for i in ids]
    )


def test_xxhash64spark_is_the_metaxy_hash(tmp_path: Path) -> None:
    client = ChdbClient(tmp_path)
    texts = ["abc", "", "vidéo/帧", "a\x1fb\x1e", "x" * 1000]
    values = ", ".join("'" + t.replace("'", "''") + "'" for t in texts)
    rows = client.query_arrow(
        f"SELECT xxHash64Spark(t) AS h, lower(leftPad(hex(h), 16, '0')) AS x "
        f"FROM (SELECT arrayJoin([{values}]) AS t)"
    ).to_pylist()
    assert [r["h"] for r in rows] == [hash_parts([t]) for t in texts]
    assert [r["x"] for r in rows] == [to_hex(hash_parts([t])) for t in texts]


def test_provenance_hashed_in_clickhouse_equals_duckdb(tmp_path: Path) -> None:
    graph = reference_graph()
    increments = {}
    for store in (
        DuckDBMetadataStore(graph, tmp_path / "m.duckdb"),
        ClickHouseMetadataStore(graph, tmp_path / "ch"),
    ):
        store.write("video/raw", _raw(["v1", "v2", "v3"]))
        store.write("video/crop", store.resolve_update("video/crop").new)
        store.write("video/raw", _raw(["v1", "v2", "v3"], audio="b"))
        increments[type(store).__name__] = store.resolve_update("video/crop")
    duck, ch = increments["DuckDBMetadataStore"], increments["ClickHouseMetadataStore"]
    assert ch.counts == duck.counts
    assert_same_rows(ch.stale, duck.stale, by=["video_id"])
    assert ch.stale.height == 3


def test_a_write_that_never_committed_is_not_seen(tmp_path: Path) -> None:
    store = ClickHouseMetadataStore(reference_graph(), tmp_path)
    store.write("video/raw", _raw(["v1"]))
    # A writer that died after appending its rows, before its row in metaxy_writes.
    history = '"metaxy"."video/raw:history"'
    store.client.command(
        f"INSERT INTO {history} (video_id, {c.WRITE_SEQ}, {c.DELETED}) VALUES ('v9', 99, false)"
    )
    assert store.read("video/raw")["video_id"].to_list() == ["v1"]
    assert store.read("video/raw", history=True).height == 1
    assert store.last_write_seq() == 1
    assert store.write("video/raw", _raw(["v2"])).write_seq == 2


def test_concurrent_writers_get_unique_sequences(tmp_path: Path) -> None:
    """Unique and increasing, not dense: a sequence two writers claimed at once is skipped."""
    graph = reference_graph()
    results: list[int] = []

    def writer(n: int) -> None:
        store = ClickHouseMetadataStore(graph, tmp_path)
        for i in range(4):
            results.append(store.write("video/raw", _raw([f"w{n}-{i}"])).write_seq)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 12
    store = ClickHouseMetadataStore(graph, tmp_path)
    assert store.read("video/raw").height == 12
    assert sorted(store.read("video/raw", history=True)[c.WRITE_SEQ]) == sorted(results)
    assert store.last_write_seq() == max(results)


def test_concurrent_writers_get_unique_record_numbers(tmp_path: Path) -> None:
    """Snapshots and failure records are numbered by claims too: none repeats."""
    graph = reference_graph()

    def writer(n: int) -> None:
        store = ClickHouseMetadataStore(graph, tmp_path)
        for i in range(4):
            failed = _raw([f"bad{n}-{i}"]).with_columns(error=pl.lit("no file"))
            store.write("video/raw", _raw([f"w{n}-{i}"]), failed=failed)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = ClickHouseMetadataStore(graph, tmp_path)
    records = store.client.query_arrow('SELECT seq, kind FROM "metaxy"."metaxy_records"')
    seqs = records.column("seq").to_pylist()
    kinds = records.column("kind").to_pylist()
    assert len(seqs) == len(set(seqs))
    assert kinds.count("failed:video/raw") == 12 and kinds.count("snapshot") >= 1
    assert sorted(store.read_failures("video/raw")["video_id"]) == sorted(
        f"bad{n}-{i}" for n in range(3) for i in range(4)
    )


def test_stores_on_two_directories_share_the_process(tmp_path: Path) -> None:
    graph = reference_graph()
    one = ClickHouseMetadataStore(graph, tmp_path / "one")
    two = ClickHouseMetadataStore(graph, tmp_path / "two")
    one.write("video/raw", _raw(["a"]))
    two.write("video/raw", _raw(["b", "c"]))
    assert one.read("video/raw")["video_id"].to_list() == ["a"]
    assert sorted(two.read("video/raw")["video_id"]) == ["b", "c"]


def test_null_lists_are_refused(tmp_path: Path) -> None:
    store = ClickHouseMetadataStore(reference_graph(), tmp_path)
    frame = _raw(["v1", "v2"]).with_columns(tags=pl.Series([["x"], None]))
    with pytest.raises(errors.ColumnTypeError, match="column 'tags' holds null lists"):
        store.write("video/raw", frame)
    assert store.read("video/raw").height == 0


def test_unsupported_types_are_refused(tmp_path: Path) -> None:
    store = ClickHouseMetadataStore(reference_graph(), tmp_path)
    frame = _raw(["v1"]).with_columns(meta=pl.struct(a=pl.lit(1)))
    with pytest.raises(errors.ColumnTypeError, match="column 'meta' has type struct"):
        store.write("video/raw", frame)


def test_a_store_of_another_format_is_refused(tmp_path: Path) -> None:
    store = ClickHouseMetadataStore(reference_graph(), tmp_path)
    store.write("video/raw", _raw(["v1"]))
    store.client.command("ALTER TABLE metaxy.metaxy_store_info UPDATE value = '1' WHERE 1")
    with pytest.raises(errors.StoreFormatError, match="format_version '1'"):
        ClickHouseMetadataStore(reference_graph(), tmp_path).read("video/raw")


def test_uris() -> None:
    graph = reference_graph()
    server = ClickHouseMetadataStore.from_uri(graph, "clickhouses://me:s%40cret@ch.local:8443/m")
    assert repr(server) == "ClickHouseMetadataStore('clickhouses://ch.local:8443', database='m')"
    embedded = ClickHouseMetadataStore.from_uri(graph, "chdb:///tmp/meta?database=x")
    assert repr(embedded) == "ClickHouseMetadataStore('chdb:///tmp/meta', database='x')"
    with pytest.raises(errors.ConfigError, match="not a ClickHouse URI"):
        ClickHouseMetadataStore.from_uri(graph, "duckdb:///x.duckdb")
    with pytest.raises(errors.ConfigError, match=r"'clickhousee://ch\.local/m' is not") as raised:
        ClickHouseMetadataStore.from_uri(graph, "clickhousee://me:s3cret@ch.local/m")
    assert "s3cret" not in str(raised.value)


def test_closed_store_directory_can_be_removed_and_reopens(tmp_path: Path) -> None:
    # An open chdb session merges the parts of many small writes in the background, writing
    # into its directory: removing the directory then could fail ("Directory not empty").
    store = ClickHouseMetadataStore(reference_graph(), tmp_path / "ch")
    for i in range(8):
        store.write("video/raw", _raw([f"v{i}"]))
    store.close()
    assert sorted(store.read("video/raw")["video_id"]) == [f"v{i}" for i in range(8)]
    store.close()
    shutil.rmtree(tmp_path / "ch")
    assert not (tmp_path / "ch").exists()
