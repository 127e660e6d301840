"""Example multimodal pipeline: synthetic video clips, per-clip steps, and their data.

- :mod:`example_project.media`: the clips on disk (generation, content hashes, scanning);
- :mod:`example_project.edit`: change clips as a user would (``python -m example_project.edit``);
- :mod:`example_project.compute`: the per-clip CPU steps;
- :mod:`example_project.assets`: those steps as metaxy assets;
- :mod:`example_project.definitions`: the Dagster code location (``dagster dev -m ...``);
- :mod:`example_project.demo`: ``make demo``;
- :mod:`example_project.devserver`: start the demo server and drive it over GraphQL (used by
  the end-to-end test and ``scripts/screenshots.py``).
"""
