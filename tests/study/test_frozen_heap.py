"""The study loop runs with the heap that existed before it frozen (lab/study/run.py
`frozen_heap`): the garbage collector skips it while cells free their models, and it is
unfrozen again afterwards, also when a cell fails, so a process running several studies
(a notebook) keeps nothing frozen for good; a heap the process froze itself (the test
session, tests/conftest.py) stays frozen."""

from __future__ import annotations

import gc

import pytest

from lab.study.run import frozen_heap


@pytest.fixture
def unfrozen():
    """The heap as a process that froze nothing has it (conftest.py froze the test session's)."""
    gc.unfreeze()
    yield
    gc.collect()
    gc.freeze()


def test_the_heap_is_frozen_during_the_cells_and_unfrozen_after_even_on_error(unfrozen):
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        new = [[] for _ in range(10)]  # made after the freeze: still collected as usual
        assert all(gc.is_tracked(x) for x in new)
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("a cell failed")
    assert gc.get_freeze_count() == 0


def test_a_heap_the_process_froze_stays_frozen(unfrozen):
    """Before: the study unfroze the caller's frozen heap along with its own. (Frozen objects
    are in no generation that gc.get_objects lists; the freeze count itself may drop while
    frozen objects are freed by their reference counts.)"""
    before = []  # a tracked object that exists when the process freezes its heap
    gc.freeze()
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        new = [[] for _ in range(10)]
        assert all(gc.is_tracked(x) for x in new)
    assert gc.get_freeze_count() > 0
    assert gc.is_tracked(before)
    assert not any(x is before for x in gc.get_objects())  # still frozen
