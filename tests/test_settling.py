"""What a settling connection gets of a live batch (gusher.edge.settling.newer) — pure."""

from __future__ import annotations

from gusher.edge.settling import newer
from tests.inprocess import numbered


def offsets(batch: list) -> list[int]:
    return [p.offset for p in batch]


def test_late_copies_are_skipped_until_the_top_arrives_then_everything_passes() -> None:
    out, position, settled = newer(3, 3, [numbered("c", 3), numbered("c", 4)])
    assert offsets(out) == [4] and position == 4 and settled
    out, position, settled = newer(5, 5, [numbered("c", 2), numbered("c", 3)])
    assert out == [] and position == 5 and not settled


def test_a_numbering_that_starts_again_after_the_top_passes_whole() -> None:
    out, _, settled = newer(5, 5, [numbered("c", 6), numbered("c", 1), numbered("c", 2)])
    assert offsets(out) == [6, 1, 2] and settled


def test_unnumbered_messages_always_pass() -> None:
    from gusher.core.publication import Publication

    raw = Publication.parse(b"plain text")
    assert raw is not None
    out, position, settled = newer(5, 8, [raw])
    assert out == [raw] and position == 5 and not settled
