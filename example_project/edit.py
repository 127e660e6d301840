"""Edit the example clips on disk, to watch the pipeline react.

Usage::

    python -m example_project.edit {add,audio,frames,remove} --count K [--data-dir DIR]

``add`` creates K new clips after the highest id; ``audio`` / ``frames`` give that track of
the first K clips new content (a new sentence; the face on a new path), the other track's
bytes unchanged; ``remove`` deletes the last K clips. The data
directory defaults to ``example_project/data`` (or ``$METAXY_EXAMPLE_DATA``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from example_project.media import (
    clip_dir,
    clip_index,
    default_data_dir,
    generate_clips,
    list_clips,
    read_versions,
    write_clip,
    write_versions,
)

__all__ = ["add_clips", "edit_audio", "edit_frames", "main", "remove_clips"]


def _check_count(count: int) -> None:
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")


def add_clips(count: int, data_dir: Path | None = None) -> list[str]:
    """Create ``count`` new clips numbered after the highest existing one.

    Returns:
        The new clip ids.
    """
    _check_count(count)
    root = default_data_dir() if data_dir is None else Path(data_dir)
    existing = list_clips(root)
    start = clip_index(existing[-1]) + 1 if existing else 0
    return generate_clips(root, count, start=start)


def _edit(field: str, count: int, data_dir: Path | None) -> list[str]:
    """Bump ``field``'s edit version of the first ``count`` clips and rewrite their videos.

    Both tracks are encoded again; the other one comes out byte-identical.
    """
    _check_count(count)
    root = default_data_dir() if data_dir is None else Path(data_dir)
    edited = list_clips(root)[:count]
    for cid in edited:
        versions = read_versions(root, cid)
        versions[field] = max(versions[field], 0) + 1  # a silenced track gets speech again
        write_clip(root, cid, versions)
        write_versions(root, cid, versions)
    return edited


def edit_audio(count: int, data_dir: Path | None = None) -> list[str]:
    """Give the first ``count`` clips a new sentence in their audio track (frames untouched).

    Returns:
        The edited clip ids.
    """
    return _edit("audio", count, data_dir)


def edit_frames(count: int, data_dir: Path | None = None) -> list[str]:
    """Move the face of the first ``count`` clips along a new path (audio untouched).

    Returns:
        The edited clip ids.
    """
    return _edit("frames", count, data_dir)


def remove_clips(count: int, data_dir: Path | None = None) -> list[str]:
    """Delete the folders of the last ``count`` clips.

    Returns:
        The removed clip ids.
    """
    _check_count(count)
    root = default_data_dir() if data_dir is None else Path(data_dir)
    ids = list_clips(root)
    removed = ids[len(ids) - min(count, len(ids)) :]
    for cid in removed:
        shutil.rmtree(clip_dir(root, cid))
    return removed


_ACTIONS = {
    "add": (add_clips, "added"),
    "audio": (edit_audio, "edited audio of"),
    "frames": (edit_frames, "edited frames of"),
    "remove": (remove_clips, "removed"),
}


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m example_project.edit",
        description="Add, edit or remove example clips.",
    )
    parser.add_argument("action", choices=sorted(_ACTIONS), help="what to change")
    parser.add_argument("--count", type=_non_negative, default=1, help="how many clips (1)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data directory (default: $METAXY_EXAMPLE_DATA or example_project/data)",
    )
    args = parser.parse_args(argv)
    action, verb = _ACTIONS[args.action]
    data_dir: Path = default_data_dir() if args.data_dir is None else args.data_dir
    ids = action(args.count, data_dir)
    listed = ", ".join(ids) if ids else "nothing"
    print(f"{verb} {len(ids)} clip(s) in {data_dir}: {listed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
