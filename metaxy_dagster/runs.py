"""What Dagster's run history says about one feature partition, for the sensor.

Runs the sensor requests carry tags naming the feature, the partition and the **generation** of
the work: the writes of the upstream features and the asset's own definition at the time. From
the latest runs of a partition the sensor learns whether one is still in flight (it waits, and
never requests a second), and how many runs of the current generation failed in a row (it
retries them by the :class:`dagster.RetryPolicy` the user set, then stops and reports them until
the generation changes: an upstream write, or a fixed definition).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import dagster as dg

__all__ = [
    "TAG_FEATURE",
    "TAG_GENERATION",
    "TAG_PARTITION",
    "Decision",
    "PartitionRuns",
    "decide",
    "partition_runs",
]

TAG_FEATURE = "metaxy/feature"
TAG_PARTITION = "metaxy/partition"
TAG_GENERATION = "metaxy/generation"

_IN_FLIGHT = frozenset(
    {
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    }
)


@dataclass(frozen=True)
class PartitionRuns:
    """The latest runs of one feature partition, as the sensor needs them."""

    in_flight: bool = False
    failures: int = 0
    """Failed runs of the current generation, the latest first, before any other outcome."""
    last_end: float | None = None
    """When the latest failed run ended (seconds since the epoch)."""
    last_run_id: str | None = None
    done: bool = False
    """The latest run succeeded at the current generation: what is left, it chose not to do."""


def partition_runs(
    instance: dg.DagsterInstance,
    feature: str,
    partition: str | None,
    generation: str,
    limit: int,
) -> PartitionRuns:
    """Read the latest ``limit`` runs of ``feature``'s ``partition`` from ``instance``."""
    tags = {TAG_FEATURE: feature, TAG_PARTITION: partition or ""}
    records = instance.get_run_records(filters=dg.RunsFilter(tags=tags), limit=limit)
    if not records:
        return PartitionRuns()
    latest = records[0].dagster_run
    if latest.status in _IN_FLIGHT:
        return PartitionRuns(in_flight=True, last_run_id=latest.run_id)
    if latest.status == dg.DagsterRunStatus.SUCCESS:
        done = latest.tags.get(TAG_GENERATION) == generation
        return PartitionRuns(last_run_id=latest.run_id, done=done)
    failures = 0
    for record in records:
        run = record.dagster_run
        if run.status != dg.DagsterRunStatus.FAILURE or run.tags.get(TAG_GENERATION) != generation:
            break
        failures += 1
    end = records[0].end_time
    return PartitionRuns(failures=failures, last_end=end, last_run_id=latest.run_id)


@dataclass(frozen=True)
class Decision:
    """Whether to request a run of a partition with work now, and under which attempt."""

    request: bool
    attempt: int = 0
    reason: str = ""


def decide(runs: PartitionRuns, policy: dg.RetryPolicy, now: float | None = None) -> Decision:
    """Request, wait or give up, by the runs so far and the retry policy."""
    if runs.in_flight:
        return Decision(False, reason=f"run {runs.last_run_id} is in flight")
    if runs.done:
        return Decision(False, reason=f"run {runs.last_run_id} succeeded on these inputs")
    if runs.failures == 0:
        return Decision(True)
    if runs.failures > policy.max_retries:
        return Decision(
            False,
            reason=f"failed {runs.failures} time(s), last in run {runs.last_run_id}; retries "
            f"exhausted ({policy.max_retries}): fix it, or write upstream, to run it again",
        )
    ready = (runs.last_end or 0.0) + float(policy.calculate_delay(runs.failures))
    if (time.time() if now is None else now) < ready:
        return Decision(False, reason=f"retry {runs.failures} waits until {ready:.0f}")
    return Decision(True, attempt=runs.failures)
