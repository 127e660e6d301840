"""metaxy_dagster: metaxy features as Dagster assets."""

__all__: list[str] = []
