"""What a feature must (re)compute: new, stale and orphaned samples."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

__all__ = ["Increment", "IncrementCounts", "StaleReason"]


class StaleReason:
    """Values of the ``metaxy_stale_reason`` column of :attr:`Increment.stale`."""

    CODE_VERSION = "code_version"
    """The field's own definition changed (code version, dependencies or lineage)."""
    INPUT_DATA = "input_data"
    """Data versions of the upstream fields it reads changed (for a root: the given ones)."""


@dataclass(frozen=True)
class IncrementCounts:
    """How many samples are new, stale and orphaned, and how many were held back because they
    failed under their current provenance (not counted in new or stale)."""

    new: int
    stale: int
    orphaned: int
    failed: int = 0

    @property
    def total(self) -> int:
        """Samples that must be computed: new plus stale."""
        return self.new + self.stale


@dataclass(frozen=True)
class Increment:
    """The samples one feature must compute.

    Attributes:
        new: never computed: id columns, upstream columns and the expected
            ``metaxy_provenance__<field>`` of each field.
        stale: computed, but at least one field's expected provenance differs; the columns of
            ``new`` plus ``metaxy_changed_fields`` (list of field keys) and
            ``metaxy_stale_reason`` (``code_version``, ``input_data`` or both, comma-separated).
        orphaned: stored, but no longer produced by upstream: id columns only.
        failed: new or stale samples held back, because they failed under their current
            provenance (see :mod:`metaxy_core.store.failures`): key columns, ``status``
            (``new`` or ``stale``), ``error`` (the latest message), ``attempts``, ``failed_at``
            and ``run_id``. Empty when nothing failed or when retrying failed samples.
    """

    feature: str
    new: pl.DataFrame
    stale: pl.DataFrame
    orphaned: pl.DataFrame
    failed: pl.DataFrame = field(default_factory=pl.DataFrame)

    @property
    def counts(self) -> IncrementCounts:
        """Row counts of the four frames."""
        return IncrementCounts(
            self.new.height, self.stale.height, self.orphaned.height, self.failed.height
        )

    def to_compute(self) -> pl.DataFrame:
        """New and stale samples in one frame (stale columns null for new samples)."""
        return pl.concat([self.new, self.stale], how="diagonal_relaxed")
