"""@metaxy_asset takes what dagster.asset takes: its keywords, and a full asset function."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from metaxy_core import errors
from metaxy_core.testing import root_samples
from metaxy_dagster import MetaxyIOManager, MetaxyStoreResource, feature_graph, metaxy_asset

IDS = ["v1", "v2", "v3"]


class Model(dg.ConfigurableResource):  # type: ignore[type-arg]  # generic only in stubs
    """A model object, as a Dagster resource."""

    suffix: str

    def predict(self, value: str) -> str:
        return f"{value}:{self.suffix}"


class StepConfig(dg.Config):
    repeat: int = 1


@metaxy_asset(key="video/raw", id_columns=["video_id"], fields=["audio"])
def raw(context: dg.AssetExecutionContext) -> pl.DataFrame:
    return root_samples("video_id", IDS, audio=[f"a-{i}" for i in IDS])


@dg.asset
def vocabulary() -> list[str]:
    return ["hello"]


def _resources(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    store = MetaxyStoreResource(path=str(tmp_path / "metaxy.duckdb"))
    return {"metaxy_store": store, "metaxy_io_manager": MetaxyIOManager(store=store), **extra}


def _read(tmp_path: Path, asset: dg.AssetsDefinition, feature: str) -> pl.DataFrame:
    store = MetaxyStoreResource(path=str(tmp_path / "metaxy.duckdb"))
    return store.get_store(feature_graph([asset])).read(feature).sort("video_id")


def test_resource_config_input_and_merged_keywords(tmp_path: Path) -> None:
    seen: list[tuple[str, ...]] = []

    @metaxy_asset(
        key="audio/transcript",
        id_columns=["video_id"],
        deps=[raw],
        metadata={"team": "speech", "dagster/column_schema": None},
        kinds={"python"},
        tags={"tier": "gold"},
        owners=["team:speech"],
        description="Transcripts, by the model.",
        retry_policy=dg.RetryPolicy(max_retries=3),
        automation_condition=dg.AutomationCondition.eager(),
        group_name="speech",
    )
    def transcript(
        context: dg.AssetExecutionContext,
        increment: pl.DataFrame,
        config: StepConfig,
        model: Model,
        vocabulary: list[str],
    ) -> pl.DataFrame:
        seen.append((context.asset_key.to_user_string(), *vocabulary))
        text = [model.predict(v) * config.repeat for v in increment["video_id"]]
        return increment.select("video_id", text=pl.Series(text))

    spec = transcript.specs_by_key[transcript.key]
    assert spec.kinds == {"metaxy", "duckdb", "python"}
    assert spec.metadata["team"] == "speech"
    assert spec.metadata["dagster/column_schema"] is None  # the user's value wins on a dagster key
    assert spec.metadata["metaxy/feature"] == "audio/transcript"
    assert spec.tags == {"tier": "gold", "dagster/kind/metaxy": "", "dagster/kind/duckdb": "",
                         "dagster/kind/python": ""}  # fmt: skip
    assert spec.owners == ["team:speech"]
    assert spec.description == "Transcripts, by the model."
    assert spec.group_name == "speech"
    assert spec.automation_condition == dg.AutomationCondition.eager()
    assert transcript.op.retry_policy == dg.RetryPolicy(max_retries=3)
    assert transcript.required_resource_keys == {"metaxy_store", "metaxy_io_manager", "model"}
    assert {k.to_user_string() for k in transcript.keys_by_input_name.values()} == {
        "vocabulary",
        "video/raw",
    }

    result = dg.materialize(
        [raw, transcript, vocabulary],
        resources=_resources(tmp_path, model=Model(suffix="m1")),
        run_config={"ops": {"audio__transcript": {"config": {"repeat": 2}}}},
    )
    assert result.success
    assert seen == [("audio/transcript", "hello")]
    assert _read(tmp_path, transcript, "audio/transcript")["text"].to_list() == [
        f"{i}:m1{i}:m1" for i in IDS
    ]


def test_required_resource_keys_adds_the_store(tmp_path: Path) -> None:
    @metaxy_asset(
        key="audio/features", id_columns=["video_id"], deps=[raw], required_resource_keys={"model"}
    )
    def features(context: dg.AssetExecutionContext, increment: pl.DataFrame) -> pl.DataFrame:
        model: Model = context.resources.model
        return increment.select("video_id", f=pl.col("video_id").map_elements(model.predict))

    assert features.required_resource_keys == {"metaxy_store", "metaxy_io_manager", "model"}
    resources = _resources(tmp_path, model=Model(suffix="k"))
    assert dg.materialize([raw, features], resources=resources).success
    assert _read(tmp_path, features, "audio/features")["f"].to_list() == [f"{i}:k" for i in IDS]


def test_the_function_may_take_the_store_and_no_context(tmp_path: Path) -> None:
    @metaxy_asset(key="audio/copy", id_columns=["video_id"], deps=[raw])
    def copy(increment: pl.DataFrame, metaxy_store: MetaxyStoreResource) -> pl.DataFrame:
        assert metaxy_store.path == str(tmp_path / "metaxy.duckdb")
        return increment.select("video_id")

    assert dg.materialize([raw, copy], resources=_resources(tmp_path)).success
    assert _read(tmp_path, copy, "audio/copy")["video_id"].to_list() == IDS


@pytest.mark.parametrize(
    ("keyword", "value", "why"),
    [
        ("code_version", "2", "metaxy derives it from the feature's own definition"),
        ("name", "crop", "the asset key is the feature key; set key="),
        ("key_prefix", ["video"], "the asset key is the feature key; set key="),
        (
            "partitions_def",
            dg.StaticPartitionsDefinition(["a"]),
            "metaxy scopes each increment to its partition; pass partitions=",
        ),
        ("io_manager_def", None, "metaxy assets are written by MetaxyIOManager"),
        ("dagster_type", None, "the output of a metaxy asset is the rows metaxy writes"),
        ("compute_kind", "python", "Dagster replaced it by kinds=; pass kinds={...}"),
        ("non_argument_deps", None, "list upstream assets in deps="),
    ],
)
def test_keywords_metaxy_sets_are_refused_with_the_reason(
    keyword: str, value: object, why: str
) -> None:
    with pytest.raises(
        errors.AssetDefinitionError,
        match=rf"^metaxy_asset does not take {keyword}=: {re.escape(why)}",
    ):
        metaxy_asset(key="video/crop", id_columns=["video_id"], **{keyword: value})


def test_unknown_keywords_and_metaxy_metadata_are_refused() -> None:
    with pytest.raises(
        errors.AssetDefinitionError, match=r"^metaxy_asset got an unknown keyword colour=; it "
    ):
        metaxy_asset(key="video/crop", id_columns=["video_id"], colour="red")
    with pytest.raises(
        errors.AssetDefinitionError,
        match=re.escape(
            "asset 'video/crop': metadata keys ['metaxy/feature'] are metaxy's own; rename yours"
        ),
    ):

        @metaxy_asset(key="video/crop", id_columns=["video_id"], metadata={"metaxy/feature": "x"})
        def crop(context: dg.AssetExecutionContext) -> pl.DataFrame:
            return pl.DataFrame()


def test_the_increment_parameter_is_required_downstream_and_refused_on_roots() -> None:
    with pytest.raises(
        errors.AssetDefinitionError,
        match=re.escape(
            "function 'crop' of asset 'video/crop' has no 'increment' parameter: a downstream "
            "asset receives its new and stale samples there. Add it, e.g. def crop(context, "
            "increment)."
        ),
    ):

        @metaxy_asset(key="video/crop", id_columns=["video_id"], deps=[raw])
        def crop(context: dg.AssetExecutionContext) -> pl.DataFrame:
            return pl.DataFrame()

    with pytest.raises(errors.AssetDefinitionError, match="'other/root' is a root feature"):

        @metaxy_asset(key="other/root", id_columns=["video_id"])
        def root(context: dg.AssetExecutionContext, increment: pl.DataFrame) -> pl.DataFrame:
            return increment

    with pytest.raises(errors.AssetDefinitionError, match="positional-only, \\*args or \\*\\*kw"):

        @metaxy_asset(key="video/crop", id_columns=["video_id"], deps=[raw])
        def star(context: dg.AssetExecutionContext, increment: pl.DataFrame, **rest: Any) -> Any:
            return increment


@pytest.mark.parametrize("engine", ["duckdb", "polars"])
def test_kinds_name_the_engine_of_the_store_given(tmp_path: Path, engine: str) -> None:
    store = MetaxyStoreResource(path=str(tmp_path / "metaxy.duckdb"), engine=engine)

    @metaxy_asset(key="video/crop", id_columns=["video_id"], deps=[raw], store=store, kinds={"gpu"})
    def crop(context: dg.AssetExecutionContext, increment: pl.DataFrame) -> pl.DataFrame:
        return increment.select("video_id")

    assert crop.specs_by_key[crop.key].kinds == {"metaxy", engine, "gpu"}
    resources = {"metaxy_store": store, "metaxy_io_manager": MetaxyIOManager(store=store)}
    result = dg.materialize([raw, crop], resources=resources)
    [event] = result.asset_materializations_for_node("video__crop")
    assert event.metadata["metaxy/engine"] == dg.TextMetadataValue(engine)
