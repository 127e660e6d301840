"""The field-aware sensor: runs exactly the assets, and partitions, whose dependent fields changed.

Dagster's own staleness is per asset: any upstream materialization makes every downstream asset
stale. This sensor asks the store instead, per sample and per field, so new audio for some videos
requests runs of the assets that read audio, for the partitions holding those videos, and of
nothing that reads only frames.

Each tick:

1. reads the store's latest write sequence; if it equals the cursor, nothing was written since
   the last tick and it skips at once;
2. walks the features in topological order; a feature waits while any of its upstream features
   has work (so nothing is computed twice); otherwise it counts its new, stale and orphaned
   samples, per partition (all partitions of a feature in one pass over its samples);
3. requests one run per asset and partition with work. The run key holds the feature, the
   partition and the latest writes of the feature and of its upstream features: repeated ticks
   request the same key (Dagster runs it once) until one of those features is written again,
   whatever else was written meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from metaxy_core import (
    FeatureGraph,
    IncrementCounts,
    Lineage,
    MetadataStore,
    errors,
    hash_parts,
    to_hex,
)
from metaxy_dagster.features import (
    FEATURE_KEY,
    feature_graph,
    metaxy_features,
    metaxy_fingerprints,
    metaxy_partitions,
)
from metaxy_dagster.metadata import asset_key
from metaxy_dagster.partitions import HashShardPartitions, MetaxyPartitions
from metaxy_dagster.pruning import record_pruned
from metaxy_dagster.resource import MetaxyStoreResource
from metaxy_dagster.runs import (
    TAG_FEATURE,
    TAG_GENERATION,
    TAG_PARTITION,
    PartitionRuns,
    decide,
    partition_runs,
)

__all__ = ["build_metaxy_sensor"]

Partitioning = Mapping[str, MetaxyPartitions | None]


def _partition_keys(
    partitions: MetaxyPartitions, instance: dg.DagsterInstance | None
) -> Sequence[str]:
    return partitions.partitions_def.get_partition_keys(dynamic_partitions_store=instance)


def _partitions(
    feature: str, partitioning: Partitioning, instance: dg.DagsterInstance | None
) -> list[str | None]:
    """Every partition of ``feature`` (one ``None`` if unpartitioned)."""
    partitions = partitioning.get(feature)
    if partitions is None:
        return [None]
    if isinstance(partitions, HashShardPartitions):
        return [partitions.partition_of(i) for i in range(partitions.count)]
    return list(_partition_keys(partitions, instance))


def _partition_counts(
    store: MetadataStore,
    feature: str,
    partitioning: Partitioning,
    instance: dg.DagsterInstance | None,
) -> Iterator[tuple[str | None, IncrementCounts]]:
    """(partition, counts) of every partition of ``feature`` (one ``None`` if unpartitioned).

    Every partition is counted in one pass over the samples (column partitions of an
    expansion, or of a column that is not a string, one partition at a time)."""
    partitions = partitioning.get(feature)
    if partitions is None:
        yield None, store.count_update(feature)
    elif isinstance(partitions, HashShardPartitions):
        counts = store.count_update_by_shard(feature, partitions.count)
        for index, shard_counts in enumerate(counts):
            yield partitions.partition_of(index), shard_counts
    else:
        keys = _partition_keys(partitions, instance)
        yield from store.count_update_by_column(feature, partitions.column, keys).items()


def _same_scope(
    graph: FeatureGraph, feature: str, upstream: str, partitioning: Partitioning
) -> bool:
    """Whether partition ``p`` of ``feature`` holds exactly the samples that partition ``p``
    of ``upstream`` feeds, so it need only wait for that one partition."""
    mine, theirs = partitioning.get(feature), partitioning.get(upstream)
    if mine is None or mine != theirs:
        return False
    return graph.dependency(feature, upstream).lineage is not Lineage.AGGREGATION


Work = tuple[str, str | None, IncrementCounts]


def _pending(
    store: MetadataStore,
    selected: set[str],
    partitioning: Partitioning,
    instance: dg.DagsterInstance | None,
    idle: list[tuple[str, str | None]],
    unwritten: dict[str, str],
    held: dict[str, int] | None = None,
) -> Iterator[Work]:
    """(feature, partition, counts) for every scope with work whose upstream is not waiting;
    appends to ``idle`` the selected scopes with nothing to compute nor to wait for, and adds
    to ``held`` the samples of each selected feature held back because they failed.

    Waiting is per partition when a feature and its upstream are partitioned alike (shard 0
    of faces waits for shard 0 of crop only), else per feature. A feature reading a field that
    its root upstream has not written yet (a field added to the root) waits too, and
    ``unwritten`` gets root -> why: the root's scan writes the field.
    """
    graph = store.graph
    busy: dict[str, set[str | None]] = {}  # feature -> partitions with work, or waiting
    for feature in graph.topological_order():
        if graph[feature].is_root:
            continue  # roots change when their sources are scanned (a schedule), not here
        blocked_all = False
        blocked: set[str | None] = set()
        for up in graph.upstream(feature):
            if not busy.get(up):
                continue
            if _same_scope(graph, feature, up, partitioning):
                blocked |= busy[up]
            else:
                blocked_all = True
        if blocked_all:  # nothing to count: it waits, whatever its samples
            busy[feature] = set(_partitions(feature, partitioning, instance))
            continue
        mine: set[str | None] = set()
        try:
            counted = list(_partition_counts(store, feature, partitioning, instance))
        except errors.UpstreamFieldNotWrittenError as exc:
            # Only a root can be behind here: a non-root upstream missing the field has work
            # (its own samples are stale by the new field), so this feature waited above.
            for up in graph.upstream(feature):
                if graph[up].is_root:
                    unwritten.setdefault(up, str(exc))
            busy[feature] = set(_partitions(feature, partitioning, instance))
            continue
        for partition, counts in counted:
            if counts.failed and held is not None and feature in selected:
                held[feature] = held.get(feature, 0) + counts.failed
            if partition in blocked:
                mine.add(partition)
            elif counts.total or counts.orphaned:
                mine.add(partition)
                if feature in selected:
                    yield feature, partition, counts
            elif feature in selected:
                idle.append((feature, partition))
        busy[feature] = mine


def _generation(store: MetadataStore, feature: str, fingerprint: str) -> str:
    """What the work of ``feature`` is computed from: the latest writes of the features it
    reads, and its own definition. Not its own writes: finishing one partition's run leaves
    the generation (and the run keys) of its other partitions as they were."""
    seqs = [f"{up}={store.last_write_seq(up)}" for up in store.graph.upstream(feature)]
    return to_hex(hash_parts(["metaxy-generation/v1", feature, fingerprint, *seqs]))


def _step_generation(
    store: MetadataStore, members: Sequence[str], fingerprints: Mapping[str, str]
) -> str:
    """The generation of a step: of its feature, or of all the features of a multi-asset."""
    parts = [_generation(store, m, fingerprints.get(m, "")) for m in members]
    return parts[0] if len(parts) == 1 else to_hex(hash_parts(["metaxy-step/v1", *parts]))


def _steps(assets: Sequence[dg.AssetsDefinition]) -> dict[str, tuple[str, ...]]:
    """Feature -> all the features of its multi-asset (sorted), for multi-asset members."""
    out: dict[str, tuple[str, ...]] = {}
    for a in assets:
        members = tuple(
            sorted(str(s.metadata[FEATURE_KEY]) for s in a.specs if FEATURE_KEY in s.metadata)
        )
        if len(members) > 1:
            out.update((m, members) for m in members)
    return out


@dataclass(frozen=True)
class _Cursor:
    """The sensor's cursor: the store write and definitions it saw, and the partitions it
    still expects a run of (requested, running, or waiting to be retried)."""

    seq: int
    code: str
    open: tuple[tuple[str, str], ...] = ()

    def dump(self) -> str:
        return json.dumps({"seq": self.seq, "code": self.code, "open": self.open})

    @classmethod
    def load(cls, text: str | None) -> _Cursor | None:
        try:
            data = json.loads(text or "")
            return cls(int(data["seq"]), str(data["code"]), tuple(map(tuple, data["open"])))
        except (ValueError, KeyError, TypeError):
            return None  # no cursor, or one of an older version: look at everything


def _settled(cursor: _Cursor, instance: dg.DagsterInstance | None) -> bool:
    """Whether every partition the last tick left open still has a run in flight."""
    if instance is None:
        return not cursor.open
    return all(
        partition_runs(instance, feature, partition or None, "", 1).in_flight
        for feature, partition in cursor.open
    )


def _instance(context: dg.SensorEvaluationContext) -> dg.DagsterInstance | None:
    try:
        return context.instance
    except dg.DagsterInvariantViolationError:
        return None  # a context built in a test without an instance: no run history


def build_metaxy_sensor(
    assets: Sequence[dg.AssetsDefinition],
    *,
    store: MetaxyStoreResource,
    name: str = "metaxy_sensor",
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
    retry_policy: dg.RetryPolicy | None = None,
    record_pruned_assets: bool = True,
    request_runs: bool = True,
) -> dg.SensorDefinition:
    """A sensor requesting runs of the metaxy ``assets`` that have new, stale or orphaned samples.

    Args:
        assets: the metaxy assets of the code location (their graph is built from them).
        store: the store resource.
        name: the sensor's name.
        minimum_interval_seconds: seconds between ticks.
        default_status: whether the sensor runs when first loaded.
        retry_policy: how a failed run of a partition is requested again: up to
            ``max_retries`` more times, ``delay`` seconds (with ``backoff``) after the last
            failure. Then the partition is reported failed (in the tick's log and the
            up-to-date check) until its upstream is written again or its asset's definition
            changes (a fix). Default: 3 retries, 60 seconds apart, doubling.
        record_pruned_assets: record an asset that has nothing to compute after an upstream
            write as up to date in Dagster (a runless, pruned materialization), so that
            Dagster's own staleness agrees with metaxy (:mod:`metaxy_dagster.pruning`).
        request_runs: request runs; ``False`` when declarative automation
            (:func:`~metaxy_dagster.metaxy_eager`) runs the assets and the sensor only records
            pruned assets.

    Example:
        .. code-block:: python

            store = MetaxyStoreResource(path="metaxy.duckdb")
            sensor = build_metaxy_sensor(assets, store=store,
                                         default_status=dg.DefaultSensorStatus.RUNNING)
            defs = dg.Definitions(assets=assets, sensors=[sensor], resources={...})
    """
    graph = feature_graph(assets)  # fails at load on an invalid graph, not at a tick
    partitioning = metaxy_partitions(assets)
    fingerprints = metaxy_fingerprints(assets)
    code_versions = {
        str(spec.metadata[FEATURE_KEY]): str(spec.code_version)
        for a in assets
        for spec in a.specs
        if FEATURE_KEY in spec.metadata and spec.code_version is not None
    }
    policy = retry_policy or dg.RetryPolicy(max_retries=3, delay=60, backoff=dg.Backoff.EXPONENTIAL)
    selected = set(metaxy_features(assets))
    code = to_hex(
        hash_parts(["metaxy-sensor/v1", *(f"{k}={v}" for k, v in sorted(fingerprints.items()))])
    )
    keys = [asset_key(f) for f in sorted(selected)]
    steps = _steps(assets)

    @dg.sensor(
        name=name,
        asset_selection=keys,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Runs metaxy assets whose dependent fields changed, per partition.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        instance = _instance(context)
        metadata_store = store.get_store(graph)
        with metadata_store:
            seq = metadata_store.last_write_seq()
            cursor = _Cursor.load(context.cursor)
            if cursor and (cursor.seq, cursor.code) == (seq, code) and _settled(cursor, instance):
                return dg.SkipReason(f"no new writes since write {seq}")
            requests: list[dg.RunRequest] = []
            still_open: list[tuple[str, str]] = []
            failed: list[str] = []
            idle: list[tuple[str, str | None]] = []
            unwritten: dict[str, str] = {}
            held: dict[str, int] = {}
            work = list(
                _pending(metadata_store, selected, partitioning, instance, idle, unwritten, held)
            )
            # A root behind a field its downstream reads: its scan writes the field.
            scans = {root for root in unwritten if root in selected}
            work += [
                (root, partition, IncrementCounts(0, 0, 0))
                for root in sorted(scans)
                for partition in _partitions(root, partitioning, instance)
            ]
            for root in sorted(set(unwritten) - scans):
                context.log.warning(f"metaxy: waiting for a write of {root}: {unwritten[root]}")
            units: set[tuple[str, str | None]] = set()
            for member, partition, counts in work:
                if not request_runs:
                    continue
                # The features of one multi-asset run together: one request for the step,
                # tracked under its first feature.
                members = steps.get(member, (member,))
                feature = members[0]
                if (feature, partition) in units:
                    continue
                units.add((feature, partition))
                generation = _step_generation(metadata_store, members, fingerprints)
                runs = (
                    partition_runs(instance, feature, partition, generation, policy.max_retries + 2)
                    if instance is not None
                    else PartitionRuns()
                )
                decision = decide(runs, policy)
                where = f"{feature}{f' [{partition}]' if partition else ''}"
                if not decision.request:
                    if runs.failures > policy.max_retries:
                        context.log.warning(f"metaxy: {where} {decision.reason}")
                        failed.append(where)
                    elif not runs.done:
                        still_open.append((feature, partition or ""))
                    continue
                still_open.append((feature, partition or ""))
                attempt = f"|retry-{decision.attempt}" if decision.attempt else ""
                requests.append(
                    dg.RunRequest(
                        run_key=f"{feature}|{partition or ''}|{generation}{attempt}",
                        asset_selection=[asset_key(m) for m in members],
                        partition_key=partition,
                        tags={
                            TAG_FEATURE: feature,
                            TAG_PARTITION: partition or "",
                            TAG_GENERATION: generation,
                            "metaxy/attempt": str(decision.attempt),
                            "metaxy/new": str(counts.new),
                            "metaxy/stale": str(counts.stale),
                            "metaxy/orphaned": str(counts.orphaned),
                            "metaxy/failed": str(counts.failed),
                            "metaxy/write_seq": str(seq),
                            **({"metaxy/reason": "field not written"} if feature in scans else {}),
                        },
                    )
                )
        if instance is not None and record_pruned_assets:
            # Dagster's own staleness, made field-exact: see metaxy_dagster.pruning.
            pruned = record_pruned(instance, graph, idle, partitioning, code_versions)
            if pruned:
                context.log.info(f"metaxy: recorded {len(pruned)} pruned asset partition(s)")
        next_cursor = _Cursor(seq, code, tuple(still_open)).dump()
        if not requests:
            reason = f"every metaxy asset is up to date at write {seq}"
            if still_open:
                reason = f"waiting for runs of {len(still_open)} partition(s) at write {seq}"
            if set(unwritten) - scans:
                behind = ", ".join(sorted(set(unwritten) - scans))
                reason = (
                    f"waiting for a write of {behind}, which lacks a field its downstream reads "
                    f"(added to the code since); materialize {behind} (write {seq})"
                )
            if failed:
                reason = (
                    f"failed, retries exhausted: {', '.join(failed)}; fix the asset, or write "
                    f"upstream, to run it again (write {seq})"
                )
            if held:
                samples = ", ".join(f"{f}: {n}" for f, n in held.items())
                reason += (
                    f"; failed samples left out until their inputs or code change ({samples}):"
                    " `metaxy retry <feature>` runs them again"
                )
            return dg.SensorResult(skip_reason=reason, cursor=next_cursor)
        return dg.SensorResult(run_requests=requests, cursor=next_cursor)

    return _sensor
