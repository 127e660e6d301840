"""The Delta Lake store beyond the golden suite: many writer processes on the session's S3
server, credentials kept out of sight, vacuum, store URIs, copying a project to Delta, and the
example project on Delta. (Every golden test also runs on ``delta-file`` and ``delta-s3``.)"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import dagster as dg
import polars as pl
import pytest
from deltalake import DeltaTable

from example_project.assets import build_assets, build_resources
from example_project.media import generate_clips
from metaxy_core import (
    DuckDBMetadataStore,
    FeatureGraph,
    FeatureSpec,
    IncrementCounts,
    InMemoryMetadataStore,
    copy_store,
    errors,
    open_store,
)
from metaxy_core import columns as c
from metaxy_core.store.delta import DeltaMetadataStore
from metaxy_core.testing import S3_BUCKET_VARIABLE, make_store, root_samples
from metaxy_dagster import feature_graph

# 16 writers x 3 appends here; `python -m bench.stores --writers 16 --writes 20` runs the
# issue's 16 x 20 on the same server and checks the same (every write, unique sequences, no
# lock file): a few minutes, as moto serves every request from one Python process.
WRITERS, WRITES = 16, 3

_WRITER = """
import sys
import polars as pl
from metaxy_core import FeatureGraph, FeatureSpec, open_store

uri, writer, writes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = open_store(uri, FeatureGraph([FeatureSpec(key="clips", id_columns=["id"])]))
for k in range(writes):
    frame = pl.DataFrame({"id": [f"{writer}-{k}"], "metaxy_data_version__default": ["h"]})
    print(store.write("clips", frame, run_id=f"w{writer}").write_seq)
"""


def _graph() -> FeatureGraph:
    return FeatureGraph(
        [
            FeatureSpec(key="clips", id_columns=["id"], fields=["audio"]),
            FeatureSpec(key="clips/loudness", id_columns=["id"], fields=["audio"], deps=["clips"]),
        ]
    )


@pytest.mark.s3
def test_sixteen_processes_append_to_one_store_on_s3_without_a_lock() -> None:
    bucket = os.environ[S3_BUCKET_VARIABLE]
    prefix = f"writers-{uuid.uuid4().hex}"
    uri = f"delta+s3://{bucket}/{prefix}"
    code = [sys.executable, "-c", _WRITER, uri]
    procs = [
        subprocess.Popen([*code, str(w), str(WRITES)], stdout=subprocess.PIPE, text=True)
        for w in range(WRITERS)
    ]
    outputs = [p.communicate(timeout=1200)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * WRITERS
    seqs = [int(line) for out in outputs for line in out.split()]
    # Every write got its own sequence, 1..320 without a gap, and every row is there.
    assert sorted(seqs) == list(range(1, WRITERS * WRITES + 1))
    store = open_store(uri, FeatureGraph([FeatureSpec(key="clips", id_columns=["id"])]))
    history = store.read("clips", history=True)
    assert history.height == WRITERS * WRITES
    assert sorted(history["id"]) == sorted(
        f"{w}-{k}" for w in range(WRITERS) for k in range(WRITES)
    )
    assert sorted(history[c.WRITE_SEQ]) == sorted(seqs)
    assert store.last_write_seq() == store.last_write_seq("clips") == WRITERS * WRITES
    # Each writer's sequences grow with its writes: the order of the commits.
    for w, out in enumerate(outputs):
        mine = history.filter(pl.col(c.RUN_ID) == f"w{w}").sort(c.WRITE_SEQ)["id"].to_list()
        assert mine == [f"{w}-{k}" for k in range(WRITES)], out
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    ]
    assert keys and not [k for k in keys if "lock" in k.lower()]


def test_rows_of_a_write_that_never_reached_the_log_stay_invisible(tmp_path: Path) -> None:
    store = DeltaMetadataStore(_graph(), tmp_path / "store")
    store.write("clips", root_samples("id", ["a"], audio=["1"]))
    rows = store.prepare_write("clips", root_samples("id", ["b"], audio=["2"]))
    # A writer that dies between its rows' commit and its log commit.
    store._commit_rows("clips", [rows], write_id=12345)
    assert store.read("clips")["id"].to_list() == ["a"]
    assert store.read("clips", history=True).height == 1
    assert store.last_write_seq() == 1
    samples = root_samples("id", ["a", "b"], audio=["1", "2"])
    assert store.count_update("clips", samples=samples) == IncrementCounts(1, 0, 0)


def test_credentials_appear_in_no_repr_error_or_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-do-not-show"
    store = DeltaMetadataStore(
        _graph(),
        "s3://no-such-bucket-metaxy/x",
        storage_options={
            "aws_access_key_id": "AKIAEXAMPLE",
            "aws_secret_access_key": secret,
            "aws_endpoint_url": "http://127.0.0.1:9",  # nothing listens: the write fails
            "aws_allow_http": "true",
            "aws_region": "us-east-1",
        },
    )
    assert secret not in repr(store) and "AKIAEXAMPLE" not in repr(store)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Exception) as failure:
        store.write("clips", root_samples("id", ["a"], audio=["1"]))
    assert secret not in str(failure.value) and secret not in repr(failure.value)
    assert secret not in caplog.text
    with pytest.raises(errors.ConfigError, match="holds no credentials") as refused:
        open_store(f"delta+s3://AKIAEXAMPLE:{secret}@bucket/prefix", _graph())
    assert secret not in str(refused.value)


def test_a_write_log_of_another_format_is_refused(tmp_path: Path) -> None:
    store = DeltaMetadataStore(_graph(), tmp_path / "store")
    DeltaTable.create(
        str(tmp_path / "store" / "_metaxy" / "writes"),
        pl.DataFrame({"x": [1]}).to_arrow().schema,
        description="someone else's table",
    )
    with pytest.raises(errors.StoreFormatError, match=r"another format \("):
        store.read("clips")


def test_vacuum_compacts_and_keeps_every_row(tmp_path: Path) -> None:
    store = DeltaMetadataStore(_graph(), tmp_path / "store")
    for k in range(3):
        store.write("clips", root_samples("id", ["a", "b"], audio=[str(k), str(k)]))
    before = store.read("clips").sort("id")
    removed = store.vacuum(retention_hours=0)
    assert removed["features/clips"] == 3  # three small files became one
    assert removed["_metaxy/writes"] == 3
    assert store.read("clips").sort("id").equals(before)
    assert store.read("clips", history=True).height == 6
    assert store.last_write_seq() == 3


def test_store_uris_open_every_store(tmp_path: Path) -> None:
    graph = _graph()
    duck = open_store(f"duckdb://{tmp_path}/a.duckdb", graph, engine="polars")
    assert repr(duck) == f"DuckDBMetadataStore({str(tmp_path / 'a.duckdb')!r}, engine='polars')"
    assert isinstance(open_store("b.duckdb", graph, base_dir=tmp_path), DuckDBMetadataStore)
    assert isinstance(open_store("memory://", graph), InMemoryMetadataStore)
    delta = open_store(f"delta+file://{tmp_path}/d", graph)
    assert repr(delta) == f"DeltaMetadataStore({str(tmp_path / 'd')!r})"
    assert (
        repr(open_store("delta+s3://bucket/a/b", graph)) == "DeltaMetadataStore('s3://bucket/a/b')"
    )
    assert (
        repr(open_store("clickhouse://ch.internal:8123/meta", graph))
        == "ClickHouseMetadataStore('clickhouse://ch.internal:8123', database='meta')"
    )
    assert (
        repr(open_store("clickhouses://ch.internal:8443/meta", graph))
        == "ClickHouseMetadataStore('clickhouses://ch.internal:8443', database='meta')"
    )
    chdb = open_store("chdb://ch", graph, base_dir=tmp_path)
    assert repr(chdb) == f"ClickHouseMetadataStore('chdb://{tmp_path / 'ch'}', database='metaxy')"
    for scheme in ("clickhouse", "clickhouses"):
        with pytest.raises(errors.ConfigError, match="credentials never go in a URI") as raised:
            open_store(f"{scheme}://admin:s3cret@ch.internal/meta", graph)
        assert str(raised.value).startswith(f"a {scheme}:// store URI holds credentials")
        assert "s3cret" not in str(raised.value)
    with pytest.raises(errors.ConfigError, match=r"unknown scheme 'ftp'; choose one of duckdb://"):
        open_store("ftp://user:pw@host/x", graph)


def test_copy_store_moves_a_project_from_duckdb_to_delta(tmp_path: Path) -> None:
    graph = _graph()
    source = DuckDBMetadataStore(graph, tmp_path / "metaxy.duckdb")
    samples = root_samples("id", ["a", "b", "c"], audio=["1", "2", "3"])
    source.write("clips", samples, run_id="r1")
    source.write("clips/loudness", source.resolve_update("clips/loudness").new, run_id="r2")
    source.delete("clips/loudness", pl.DataFrame({"id": ["c"]}))
    target = make_store("delta-file", graph, tmp_path)
    assert copy_store(source, target) == {"clips": 3, "clips/loudness": 2}
    for feature in ("clips", "clips/loudness"):
        left = source.read(feature).drop(c.WRITE_SEQ, c.WRITTEN_AT).sort("id")
        right = target.read(feature).drop(c.WRITE_SEQ, c.WRITTEN_AT).sort("id")
        assert right.select(left.columns).equals(left)
    assert target.count_update("clips", samples=samples) == IncrementCounts(0, 0, 0)
    assert target.count_update("clips/loudness") == source.count_update("clips/loudness")
    assert target.count_update("clips/loudness") == IncrementCounts(1, 0, 0)


def test_the_example_project_materializes_on_a_delta_store(
    tmp_path: Path, dagster_instance: dg.DagsterInstance
) -> None:
    clips = generate_clips(tmp_path / "data", 4)
    assets = build_assets(tmp_path / "data")
    uri = f"delta+file://{tmp_path}/metaxy"
    result = dg.materialize(assets, resources=build_resources(uri), instance=dagster_instance)
    assert result.success
    store = open_store(uri, feature_graph(assets))
    assert isinstance(store, DeltaMetadataStore)
    for feature in feature_graph(assets).topological_order():
        assert store.read(feature).height > 0, feature
    assert sorted(store.read("train/manifest")["clip_id"]) == clips
    first = store.last_write_seq()
    again = dg.materialize(assets, resources=build_resources(uri), instance=dagster_instance)
    assert again.success
    # The second run found nothing to compute: every asset wrote no row.
    assert store.read("train/manifest", history=True).height == len(clips)
    assert store.last_write_seq() >= first
