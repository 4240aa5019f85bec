"""The study loop runs with the heap that existed before it frozen (lab/study/run.py
`frozen_heap`): the garbage collector skips it while cells free their models, and it is
unfrozen again afterwards, also when a cell fails, so a process running several studies
(the tests, a notebook) keeps nothing frozen for good."""

from __future__ import annotations

import gc

import pytest

from lab.study.run import frozen_heap


def test_the_heap_is_frozen_during_the_cells_and_unfrozen_after_even_on_error():
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        new = [[] for _ in range(10)]  # made after the freeze: still collected as usual
        assert all(gc.is_tracked(x) for x in new)
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("a cell failed")
    assert gc.get_freeze_count() == 0
