"""How well the example's models did: box overlap and word error rate.

The clips are generated, so the truth is known: where the face is in every frame
(:func:`example_project.media.face_boxes`) and which sentence is spoken
(:func:`example_project.media.spoken_text`). These two measures compare the models' outputs
with it; the tests bound them.
"""

from __future__ import annotations

__all__ = ["Box", "iou", "word_error_rate"]

Box = tuple[int, int, int, int]
"""A box as (x, y, width, height), in pixels."""


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes: 1.0 for the same box, 0.0 for disjoint ones.

    >>> iou((0, 0, 10, 10), (5, 0, 10, 10))
    0.3333333333333333
    """
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    width = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    height = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = width * height
    union = aw * ah + bw * bh - inter
    return inter / union if union else 0.0


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance (substitutions, insertions, deletions) over the reference's
    word count.

    >>> word_error_rate("the small cat jumps near the car", "the small cat jumps near")
    0.2857142857142857
    """
    ref, hyp = reference.split(), hypothesis.split()
    if not ref:
        raise ValueError("word_error_rate: the reference has no words")
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, start=1):
        current = [i]
        for j, heard in enumerate(hyp, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != heard))
            )
        previous = current
    return previous[-1] / len(ref)
