"""Batch caps scale with card memory and image size; OOM back-off keeps the effective batch."""

from __future__ import annotations

import pytest

from ocr.training.batch_size import batch_cap, halve, plan_batch


def test_reference_card_scales_the_origin_cap_by_pixel_count() -> None:
    # origin-facts.md: on 24 GB the 1024 px cap ended at 2 after two OOM fixes; memory grows with pixels
    assert [batch_cap(s, 24) for s in (1280, 1024, 800, 640)] == [1, 2, 2, 4]


def test_caps_grow_with_memory_and_shrink_with_size() -> None:
    assert batch_cap(1024, 80) == 4 and batch_cap(1024, 141) == 8
    assert batch_cap(640, 80) >= batch_cap(1024, 80) >= batch_cap(1280, 80) >= 1
    assert batch_cap(2048, 8) == 1


@pytest.mark.parametrize("requested,cap,used,acc", [(8, None, 8, 1), (8, 2, 2, 4), (4, 16, 4, 1), (6, 4, 4, 2)])
def test_plan(requested: int, cap: int | None, used: int, acc: int) -> None:
    plan = plan_batch(requested, cap)
    assert (plan.used, plan.accumulate) == (used, acc)
    assert plan.used * plan.accumulate >= requested


def test_halving_keeps_effective_batch_until_one() -> None:
    plan = plan_batch(16, None)
    seen = []
    while plan is not None:
        seen.append((plan.used, plan.accumulate, plan.used * plan.accumulate))
        plan = halve(plan)
    assert seen == [(16, 1, 16), (8, 2, 16), (4, 4, 16), (2, 8, 16), (1, 16, 16)]


def test_bad_batch_is_refused() -> None:
    with pytest.raises(ValueError):
        plan_batch(0, None)
