"""The collector around start-up, compiling and loads (engine/python_heap.py): whatever the pause,
collections come back on, and what a load leaves is set aside unless an unload asks for it again."""
import gc
import weakref

import pytest

from llamba.engine import python_heap


class Node:
    """An object in a reference cycle: only the collector frees it."""
    def __init__(self):
        self.me = self


@pytest.fixture(autouse=True)
def collector_restored():
    yield
    gc.unfreeze()
    gc.enable()


def test_paused_restores_the_collector_it_found():
    with python_heap.paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()  # start-up's pause: compiling inside it leaves it paused
    with python_heap.paused():
        pass
    assert not gc.isenabled()


def test_resume_sets_start_up_aside_and_collects_again():
    gc.disable()
    node = Node()
    alive = weakref.ref(node)
    python_heap.resume()
    del node
    gc.collect()
    assert gc.isenabled() and alive() is not None  # set aside unwalked with the rest of start-up


def test_an_unload_lets_what_was_set_aside_go():
    node = Node()
    alive = weakref.ref(node)
    python_heap.settle()  # (after a load) the node survives: set aside
    del node
    gc.collect()
    assert alive() is not None  # frozen: no collection walks it
    python_heap.settle(unload=True)  # everything walked again
    assert alive() is None
