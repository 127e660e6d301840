"""Integrations with other libraries, one module each, installed as extras.

- :mod:`metaxy_core.integrations.ray`: read increments as Ray Datasets, write Ray's results
  back (``pip install 'metaxy-dagster[ray]'``).
- :mod:`metaxy_core.integrations.sqlmodel`: declare a feature as a SQLModel class, write and
  read typed rows (``pip install 'metaxy-dagster[sqlmodel]'``).

Each module imports its library itself; importing ``metaxy_core`` never does.
"""
