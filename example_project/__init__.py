"""Example multimodal pipeline: real MP4 videos, real models, and their data.

- :mod:`example_project.media`: the videos on disk (generation, track hashes, decoding);
- :mod:`example_project.speech`: text to speech with eSpeak NG, for the videos' audio tracks;
- :mod:`example_project.edit`: change videos as a user would (``python -m example_project.edit``);
- :mod:`example_project.compute`: the per-clip CPU steps (OpenCV, PocketSphinx, MFCCs);
- :mod:`example_project.quality`: how well the models did (box IoU, word error rate);
- :mod:`example_project.assets`: those steps as metaxy assets;
- :mod:`example_project.chunks`: videos cut into chunks (expansion), faces aggregated per video,
  hash-shard partitions;
- :mod:`example_project.definitions`: the Dagster code location (``dagster dev -m ...``);
- :mod:`example_project.demo`: ``make demo``;
- :mod:`example_project.devserver`: start the demo server and drive it over GraphQL (used by
  the end-to-end test and ``scripts/screenshots.py``).
"""
