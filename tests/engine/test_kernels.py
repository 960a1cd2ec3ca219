"""Every kernel against a numpy reference: `gguf.quants.dequantize` of the same bytes, then a
float64 product. Weight blocks are random bytes (every bit pattern is a valid quant) with sane
fp16 scales, so each bit of each layout is exercised. These run on the path this CPU gets;
test_kernel_paths.py runs them again on every other path it can execute."""
import gguf
import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T

from llamba.engine.kernels import FLOAT_TYPES, SUPPORTED_TYPES, Weight, matmul, matvec, pack

# byte offsets of the fp16 scale fields inside each block
SCALE_OFFSETS = {T.Q4_0: (0,), T.Q4_1: (0, 2), T.Q8_0: (0,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,)}


def random_weight(ttype: T, rows: int, k: int, rng) -> tuple[Weight, np.ndarray]:
    """A random weight of `ttype`, packed for its kernel, and its exact dequantization (rows, k)."""
    if ttype in (T.F32, T.F16, T.BF16):
        w = rng.standard_normal((rows, k)).astype(np.float32)
        raw = {T.F32: w, T.F16: w.astype(np.float16),
               T.BF16: (w.view(np.uint32) >> 16).astype(np.uint16)}[ttype]
        exact = gguf.quants.dequantize(raw.view(np.uint8) if ttype == T.BF16 else raw, ttype)
        return pack("w", ttype, (rows, k), raw), exact.reshape(rows, k).astype(np.float64)
    block, nbytes = GGML_QUANT_SIZES[ttype]
    raw = rng.integers(0, 256, (rows, k // block, nbytes), dtype=np.uint8)
    for off in SCALE_OFFSETS[ttype]:
        scale = (rng.uniform(0.5, 1.5, (rows, k // block)) * 0.01 * rng.choice([-1, 1], (rows, k // block)))
        raw[:, :, off:off + 2] = scale.astype(np.float16)[..., None].view(np.uint8)
    raw = raw.reshape(rows, -1)
    exact = gguf.quants.dequantize(raw, ttype).reshape(rows, k).astype(np.float64)
    return pack("w", ttype, (rows, k), raw), exact


@pytest.mark.parametrize("ttype", SUPPORTED_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("n", [1, 7])
def test_matmul_matches_dequantize_then_multiply(ttype, n):
    rng = np.random.default_rng(int(ttype) * 10 + n)
    rows, k = 48, 512
    weight, exact_w = random_weight(ttype, rows, k, rng)
    x = rng.standard_normal((n, k)).astype(np.float32)
    out = matmul(weight, x)
    assert out.shape == (n, rows) and out.dtype == np.float32
    # against a float64 product: float32 rounding, and for quants the 16-bit activations (~2e-5)
    exact = x.astype(np.float64) @ exact_w.T
    tolerance = 2e-6 if ttype in FLOAT_TYPES else 1e-4
    assert np.abs(out - exact).max() / np.abs(exact).max() < tolerance


@pytest.mark.parametrize("ttype", SUPPORTED_TYPES, ids=lambda t: t.name)
def test_batch_rows_equal_single_token_products(ttype):
    """A token's output does not depend on the batch it runs in: bit for bit."""
    rng = np.random.default_rng(99)
    weight, _ = random_weight(ttype, 32, 256, rng)
    x = rng.standard_normal((5, 256)).astype(np.float32)
    batch = matmul(weight, x)
    for t in range(5):
        assert np.array_equal(batch[t], matvec(weight, x[t]))


def test_width_mismatch_is_an_error():
    weight, _ = random_weight(T.Q4_0, 16, 64, np.random.default_rng(0))
    with pytest.raises(ValueError, match="width 64"):
        matmul(weight, np.zeros((1, 32), np.float32))
