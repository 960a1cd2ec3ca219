"""The parallel kernels' serial twins (engine/kernels/serial.py), which a fresh install's first
answers run, give their kernels' results bit for bit; and steps take the twins only while a
warm-up's parallel kernels are compiling (test_warmup.py runs a model through both)."""
import numpy as np
import pytest

from llamba.engine import ops
from llamba.engine.kernels import SUPPORTED_TYPES, Activations, product, serial
from tests.engine.test_attention import run
from tests.engine.test_kernels import random_weight


@pytest.mark.parametrize("ttype", SUPPORTED_TYPES, ids=lambda t: t.name)
def test_a_products_twin_gives_the_same_bits(ttype):
    rng = np.random.default_rng(7)
    weight, _, _ = random_weight(ttype, 48, 512, rng)
    a = Activations(rng.standard_normal((7, 512)).astype(np.float32))
    outs = np.full((2, 7, 48), np.nan, np.float32)
    kernel, args = product(weight, a, outs[0])
    kernel(*args)
    serial.twin(kernel)(*args[:-1], outs[1])
    assert np.array_equal(outs[0], outs[1])


@pytest.mark.parametrize("kv_type, window", [("f32", 0), ("f16", 20), ("q8_0", 0)])
def test_attentions_twin_gives_the_same_bits(kv_type, window):
    rng = np.random.default_rng(3)
    k, v = (rng.standard_normal((2, 150, 2, 64)).astype(np.float32) for _ in range(2))
    slots, positions = np.array([0] * 70 + [1]), np.array(list(range(3, 73)) + [149])
    q = (3 * rng.standard_normal((len(slots), 8, 64))).astype(np.float32)
    expected = run(q, k, v, slots, positions, kv_type=kv_type, window=window)
    twin = run(q, k, v, slots, positions, kv_type=kv_type, window=window, attention=serial.twin(ops.attention))
    assert np.array_equal(twin, expected)


def test_swiglus_twin_gives_the_same_bits():
    gate_up = (4 * np.random.default_rng(5).standard_normal((3, 2 * 1000))).astype(np.float32)
    assert np.array_equal(serial.twin(ops.swiglu)(gate_up), ops.swiglu(gate_up))


def test_steps_take_the_twins_only_while_parallel_kernels_compile(monkeypatch):
    assert serial.threaded(ops.swiglu) is ops.swiglu
    monkeypatch.setattr(serial, "waiting", {"a warm-up"})
    assert serial.threaded(ops.swiglu) is serial.twin(ops.swiglu) is not ops.swiglu
    with serial.parallel_here():  # (loading the parallel ones)
        assert serial.threaded(ops.swiglu) is ops.swiglu
    assert serial.threaded(ops.swiglu) is serial.twin(ops.swiglu)
