"""@metaxy_asset, the IO manager and the store resource, run by real Dagster on DuckDB files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from metaxy_core import DuckDBMetadataStore, errors, hash_string
from metaxy_core.testing import root_samples
from metaxy_dagster import (
    HashShardPartitions,
    MetaxyIOManager,
    MetaxyStoreResource,
    asset_key,
)
from tests.dagster_reference import Calls, materialization_metadata, reference_assets
from tests.reference import reference_graph

N = 200
IDS = [f"v{i:03d}" for i in range(N)]
FEATURES = ("video/raw", "video/crop", "vision/faces", "audio/transcript", "train/manifest")


class Pipeline:
    """The reference assets over one store file, with root samples a test can edit."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "metaxy.duckdb"
        self.audio = {i: f"a{i}" for i in IDS}
        self.frames = {i: f"f{i}" for i in IDS}
        self.calls: Calls = {}

    def samples(self) -> pl.DataFrame:
        return root_samples(
            "video_id",
            IDS,
            audio=[self.audio[i] for i in IDS],
            frames=[self.frames[i] for i in IDS],
        )

    def assets(self, **kwargs: object) -> list[dg.AssetsDefinition]:
        return reference_assets(self.samples, self.calls, **kwargs)  # type: ignore[arg-type]

    def resources(self) -> dict[str, object]:
        store = MetaxyStoreResource(path=str(self.path))
        return {"metaxy_store": store, "metaxy_io_manager": MetaxyIOManager(store=store)}

    def materialize(
        self, assets: list[dg.AssetsDefinition], **kwargs: object
    ) -> dg.ExecuteInProcessResult:
        self.calls.clear()
        return dg.materialize(assets, resources=self.resources(), **kwargs)  # type: ignore[arg-type]

    def received(self, feature: str) -> list[str]:
        frames = self.calls.get(feature, [])
        return sorted(pl.concat(frames)["video_id"]) if frames else []

    def store(self) -> DuckDBMetadataStore:
        return DuckDBMetadataStore(reference_graph(), self.path)


def _data_versions(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        out["/".join(mat.asset_key.path)] = mat.tags["dagster/data_version"]
    return out


def test_first_run_computes_all_second_run_nothing(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    assets = p.assets()
    first = p.materialize(assets)
    assert first.success
    for feature in FEATURES[1:]:
        assert p.received(feature) == IDS, feature
    assert materialization_metadata(first, "video/crop")["metaxy/new"] == N
    assert materialization_metadata(first, "video/crop")["metaxy/rows_written"] == N
    store = p.store()
    for feature in FEATURES:
        assert store.read(feature).height == N, feature
    versions = _data_versions(first)

    second = p.materialize(assets)
    assert second.success
    assert p.calls == {}  # no function was called: nothing to compute
    assert _data_versions(second) == versions
    assert materialization_metadata(second, "train/manifest")["metaxy/rows_written"] == 0


def test_audio_change_reruns_only_the_audio_branch(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    assets = p.assets()
    before = _data_versions(p.materialize(assets))
    edited = IDS[:10]
    for i in edited:
        p.audio[i] = "new"
    result = p.materialize(assets)
    assert p.received("video/crop") == edited
    assert p.received("audio/transcript") == edited
    assert p.received("vision/faces") == []
    assert p.received("train/manifest") == edited
    crop = p.calls["video/crop"][0]
    assert crop["metaxy_changed_fields"].to_list() == [["audio"]] * 10
    after = _data_versions(result)
    assert after["vision/faces"] == before["vision/faces"]
    for feature in ("video/raw", "video/crop", "audio/transcript", "train/manifest"):
        assert after[feature] != before[feature], feature
    assert materialization_metadata(result, "video/crop")["metaxy/stale_by_field"] == {"audio": 10}


def test_swapping_two_samples_data_versions_changes_the_data_version(tmp_path: Path) -> None:
    """Acceptance 6: the DataVersion counts each sample's ids with its data version."""
    p = Pipeline(tmp_path)
    assets = p.assets()
    before = _data_versions(p.materialize(assets))
    first, second = IDS[0], IDS[1]
    p.audio[first], p.audio[second] = p.audio[second], p.audio[first]
    p.frames[first], p.frames[second] = p.frames[second], p.frames[first]
    result = p.materialize(assets, selection=[asset_key("video/raw")])
    assert materialization_metadata(result, "video/raw")["metaxy/stale"] == 2
    stored = p.store().read("video/raw").sort("video_id")
    # The two samples now hold each other's data versions: the same multiset of versions...
    assert sorted(stored["metaxy_data_version"]) == sorted(
        p.store()
        .read("video/raw", history=True)
        .filter(pl.col("metaxy_write_seq") == pl.col("metaxy_write_seq").min())
        .get_column("metaxy_data_version")
    )
    # ...but not the same samples' data versions, so the asset's DataVersion changed.
    assert _data_versions(result)["video/raw"] != before["video/raw"]
    # Swapping back restores it: it depends on the data only.
    p.audio[first], p.audio[second] = p.audio[second], p.audio[first]
    p.frames[first], p.frames[second] = p.frames[second], p.frames[first]
    again = p.materialize(assets, selection=[asset_key("video/raw")])
    assert _data_versions(again)["video/raw"] == before["video/raw"]


def test_code_version_bump_changes_code_version_and_reruns_dependents(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    p.materialize(p.assets())
    old = {a.key: a.code_versions_by_key[a.key] for a in p.assets()}
    bumped = p.assets(code_versions={("video/crop", "frames"): "2"})
    new = {a.key: a.code_versions_by_key[a.key] for a in bumped}
    changed = {"/".join(k.path) for k in old if old[k] != new[k]}
    # Only crop's own definition changed; faces and the manifest learn of it through Dagster's
    # lineage (crop's new data version), not through a code version of their own.
    assert changed == {"video/crop"}
    result = p.materialize(bumped)
    assert result.success
    assert p.received("video/crop") == IDS
    assert {tuple(x) for x in p.calls["video/crop"][0]["metaxy_changed_fields"]} == {("frames",)}
    assert set(p.calls["video/crop"][0]["metaxy_stale_reason"]) == {"code_version"}
    assert p.received("audio/transcript") == []
    # crop's frames content is unchanged (data version = provenance, which changed), so faces
    # recomputes; transcript reads raw audio only and stays untouched.
    assert p.received("vision/faces") == IDS


def test_code_version_changes_only_with_the_assets_own_definition(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)

    def code_versions(bumps: dict[tuple[str, str], str]) -> dict[str, str | None]:
        assets = p.assets(code_versions=bumps)
        return {"/".join(a.key.path): a.code_versions_by_key[a.key] for a in assets}

    base = code_versions({})
    assert len(set(base.values())) == len(FEATURES)  # every asset has its own code version
    for bumps, changed in [
        ({("video/raw", "audio"): "2"}, {"video/raw"}),
        ({("video/crop", "audio"): "2"}, {"video/crop"}),
        ({("video/crop", "frames"): "7"}, {"video/crop"}),
        (
            {("video/raw", "audio"): "2", ("vision/faces", "faces"): "2"},
            {"video/raw", "vision/faces"},
        ),
    ]:
        bumped = code_versions(bumps)
        assert {f for f in FEATURES if bumped[f] != base[f]} == changed, bumps
    # Deterministic: the same definitions give the same code versions.
    assert code_versions({}) == base


def test_partitioned_run_processes_only_its_partition(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    shards = HashShardPartitions(4)
    assets = p.assets(partitions=shards)
    shard_of = {i: hash_string(i) % 4 for i in IDS}
    result = p.materialize(assets, partition_key="shard-2")
    assert result.success
    in_shard = sorted(i for i in IDS if shard_of[i] == 2)
    assert 0 < len(in_shard) < N
    assert p.received("video/crop") == in_shard
    assert materialization_metadata(result, "video/crop")["metaxy/new"] == len(in_shard)
    assert materialization_metadata(result, "video/crop")["metaxy/partition"] == "shard-2"
    assert sorted(p.store().read("video/crop")["video_id"]) == in_shard


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (
            lambda f: f.drop("video_id"),
            errors.MissingColumnError,
            r"feature 'video/crop': id column 'video_id' is missing; the frame has columns: out\.",
        ),
        (
            lambda f: pl.concat([f, pl.DataFrame({"video_id": ["zzz"], "out": ["x"]})]),
            errors.UnknownSampleError,
            r"asset 'video/crop' returned 1 sample\(s\) that are not in its increment, "
            r"e\.g\. \[\{'video_id': 'zzz'\}\]",
        ),
        (
            lambda f: f.with_columns(video_id=pl.lit(None, pl.String)),
            errors.NullIdError,
            r"feature 'video/crop': id column 'video_id' has 200 null value\(s\)",
        ),
    ],
)
def test_bad_output_fails_the_run_and_writes_nothing(
    tmp_path: Path, bad: object, error: type[Exception], message: str
) -> None:
    p = Pipeline(tmp_path)
    assets = p.assets(bad={"video/crop": bad})
    with pytest.raises(error, match=message):
        p.materialize(assets)
    store = p.store()
    assert store.read("video/raw").height == N
    assert store.read("video/crop").height == 0


def test_asset_definition_metadata(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    assets = {"/".join(a.key.path): a for a in p.assets()}
    transcript = assets["audio/transcript"]
    spec = transcript.specs_by_key[transcript.key]
    assert {d.asset_key for d in spec.deps} == {asset_key("video/raw")}
    assert spec.kinds == {"metaxy", "duckdb"}
    assert assets["video/raw"].descriptions_by_key[asset_key("video/raw")] == "Scan the videos."
    lineage = spec.metadata["dagster/column_lineage"]
    deps = lineage.deps_by_column["metaxy_provenance__text"]
    assert [(d.asset_key, d.column_name) for d in deps] == [
        (asset_key("video/raw"), "metaxy_data_version__audio")
    ]
    assert spec.metadata["metaxy/fields"].value["text"]["reads"] == ["video/raw.audio"]


def test_plain_downstream_asset_loads_latest_rows(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    seen: list[int] = []

    @dg.asset(
        ins={"crop": dg.AssetIn(key=asset_key("video/crop"), input_manager_key="metaxy_io_manager")}
    )
    def report(crop: pl.DataFrame) -> None:
        seen.append(crop.height)

    result = p.materialize([*p.assets(), report])
    assert result.success
    assert seen == [N]


def test_plain_downstream_asset_loads_its_partition_lazily(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    shards = HashShardPartitions(4)
    seen: list[object] = []

    @dg.asset(
        partitions_def=shards.partitions_def,
        ins={
            "crop": dg.AssetIn(key=asset_key("video/crop"), input_manager_key="metaxy_io_manager")
        },
    )
    def report(crop: pl.LazyFrame) -> None:
        seen.append(crop)

    for shard in ("shard-0", "shard-2"):
        assert p.materialize([*p.assets(partitions=shards), report], partition_key=shard).success
    shard_of = {i: hash_string(i) % 4 for i in IDS}
    for frame, shard in zip(seen, (0, 2), strict=True):
        assert isinstance(frame, pl.LazyFrame)
        ids = sorted(frame.collect()["video_id"])
        assert ids == sorted(i for i in IDS if shard_of[i] == shard)
    assert p.store().read("video/crop").height > len(ids)  # the other shard is stored too


def test_store_is_free_while_the_function_computes(tmp_path: Path) -> None:
    """Another process (a parallel step, the sensor) can use the store during a long compute."""
    p = Pipeline(tmp_path)
    probe = (
        "import sys; sys.path.insert(0, sys.argv[2]);"
        "from metaxy_core import DuckDBMetadataStore; from tests.reference import reference_graph;"
        "store = DuckDBMetadataStore(reference_graph(), sys.argv[1], lock_timeout=2);"
        "print(store.last_write_seq())"
    )
    seen: list[str] = []

    def during_compute(frame: pl.DataFrame) -> pl.DataFrame:
        root = str(Path(__file__).resolve().parent.parent)
        out = subprocess.run(
            [sys.executable, "-c", probe, str(p.path), root],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        seen.append(out.stdout.strip())
        return frame

    assert p.materialize(p.assets(bad={"video/crop": during_compute})).success
    # The probe opened the store while crop computed, and saw the writes that came before.
    assert len(seen) == 1 and int(seen[0]) >= 1
