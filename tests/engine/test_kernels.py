"""Every kernel against a numpy reference: `gguf.quants.dequantize` of the same bytes, then a
float64 product. Weight blocks are random bytes (every bit pattern is a valid quant) with sane
fp16 scales, so each bit of each layout is exercised. With 8-bit activations (isa.py) the
reference rounds the activations as llama.cpp does first, written here with numpy's own float16
and rounding. These run on the path this CPU gets; test_kernel_paths.py runs them again on every
other path it can execute."""
import gguf
import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T

from llamba.engine.kernels import FLOAT_TYPES, K_QUANTS, SUPPORTED_TYPES, Weight, isa, matmul, matvec, pack
from llamba.engine.kernels.activations import quantize_rows_8bit

# byte offsets of the fp16 scale fields inside each block
SCALE_OFFSETS = {T.Q4_0: (0,), T.Q4_1: (0, 2), T.Q5_0: (0,), T.Q5_1: (0, 2), T.Q8_0: (0,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,)}


def random_weight(ttype: T, rows: int, k: int, rng) -> tuple[Weight, np.ndarray, np.ndarray]:
    """A random weight of `ttype`, packed for its kernel, its exact dequantization (rows, k), and
    its GGUF bytes."""
    if ttype in (T.F32, T.F16, T.BF16):
        w = rng.standard_normal((rows, k)).astype(np.float32)
        raw = {T.F32: w, T.F16: w.astype(np.float16),
               T.BF16: (w.view(np.uint32) >> 16).astype(np.uint16)}[ttype]
        exact = gguf.quants.dequantize(raw.view(np.uint8) if ttype == T.BF16 else raw, ttype)
        return pack("w", ttype, (rows, k), raw), exact.reshape(rows, k).astype(np.float64), raw
    block, nbytes = GGML_QUANT_SIZES[ttype]
    raw = rng.integers(0, 256, (rows, k // block, nbytes), dtype=np.uint8)
    for off in SCALE_OFFSETS[ttype]:
        scale = (rng.uniform(0.5, 1.5, (rows, k // block)) * 0.01 * rng.choice([-1, 1], (rows, k // block)))
        raw[:, :, off:off + 2] = scale.astype(np.float16)[..., None].view(np.uint8)
    raw = raw.reshape(rows, -1)
    exact = gguf.quants.dequantize(raw, ttype).reshape(rows, k).astype(np.float64)
    return pack("w", ttype, (rows, k), raw), exact, raw


def llama_cpp_activations(x: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (n, k) rounded as llama.cpp's x86 code rounds activations: q8_0/q8_1 for block 32, q8_K
    for 256. Returns q (n, k/block, block), each block's d, and q8_1's float16(d * sum q)."""
    n, k = x.shape
    xb = x.reshape(n, k // block, block)
    amax = np.abs(xb).max(-1, keepdims=True)
    safe = np.where(amax > 0, amax, 1)
    if block == 32:
        inverse = np.where(amax > 0, np.float32(127) / safe, 0).astype(np.float32)
        q = np.rint(xb * inverse)
        d_exact = (amax / np.float32(127)).astype(np.float32)
        d = d_exact.astype(np.float16).astype(np.float32)
        with np.errstate(over="ignore"):  # beyond float16's range the sum is stored infinite, as llama.cpp's
            s = (d_exact * q.sum(-1, keepdims=True).astype(np.float32)).astype(np.float16).astype(np.float32)
        return q, d, s
    top = np.take_along_axis(xb, np.abs(xb).argmax(-1)[..., None], -1)  # the first of largest magnitude
    inverse = np.where(amax > 0, np.float32(-127) / np.where(amax > 0, top, 1), 0).astype(np.float32)
    d = np.where(amax > 0, np.float32(1) / np.where(amax > 0, inverse, 1), 0).astype(np.float32)
    return np.minimum(np.rint(xb * inverse), 127), d, None


def reference_product(ttype: T, x: np.ndarray, exact_w: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """x times the weight in float64, with x as the kernels read it: exact (16-bit activations
    follow it to ~2e-5), or, with 8-bit ones, rounded as llama.cpp rounds it (Q4_1's and Q5_1's
    minimum terms then read q8_1's stored sum, as llama.cpp's do)."""
    if ttype in FLOAT_TYPES or isa.ACTIVATION_BITS == 16:
        return x.astype(np.float64) @ exact_w.T
    block = 256 if ttype in K_QUANTS else 32
    q, d, s = llama_cpp_activations(x, block)
    rounded = (q.astype(np.float64) * d).reshape(x.shape)
    out = rounded @ exact_w.T
    if ttype in (T.Q4_1, T.Q5_1):  # a weight is d q + m: its block's m times the stored sum, not sum(d q)
        m = raw.reshape(raw.shape[0], -1, GGML_QUANT_SIZES[ttype][1])[:, :, 2:4].copy().view(np.float16)[..., 0].astype(np.float64)
        out += (s[..., 0].astype(np.float64) - rounded.reshape(q.shape).sum(-1)) @ m.T
    return out


@pytest.mark.parametrize("ttype", SUPPORTED_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("n", [1, 7])
def test_matmul_matches_dequantize_then_multiply(ttype, n):
    rng = np.random.default_rng(int(ttype) * 10 + n)
    rows, k = 48, 512
    weight, exact_w, raw = random_weight(ttype, rows, k, rng)
    x = rng.standard_normal((n, k)).astype(np.float32)
    out = matmul(weight, x)
    assert out.shape == (n, rows) and out.dtype == np.float32
    # against a float64 product: float32 rounding, and for quants with 16-bit activations their
    # rounding (~2e-5); 8-bit activations are in the reference itself
    expected = reference_product(ttype, x, exact_w, raw)
    tolerance = 2e-6 if ttype in FLOAT_TYPES else 1e-4 if isa.ACTIVATION_BITS == 16 else 1e-5
    assert np.abs(out - expected).max() / np.abs(expected).max() < tolerance


@pytest.mark.parametrize("block", [32, 256])
def test_8bit_activations_round_as_llama_cpp(block):
    """The kernels' 8-bit quantizer against the numpy one above, exactly (on every path: it is a
    plain function), over values with ties, zeros, tiny and huge blocks."""
    rng = np.random.default_rng(block)
    x = rng.standard_normal((6, 512)).astype(np.float32)
    x[1] *= 1e-6          # float16 subnormal scales
    x[2, :256] = 0        # an all-zero block
    x[3] = np.round(x[3] * 4) / 4  # many exact ties after scaling
    x[4, 7] = -50         # a block's largest value negative
    x[5] *= 1e4
    n, k = x.shape
    hi, even, odd = np.empty((n, k), np.int8), np.empty((n, k // 2), np.int16), np.empty((n, k // 2), np.int16)
    scale, sums32 = np.empty((n, k // 32), np.float32), np.empty((n, k // 32), np.float32)
    sums16 = np.empty((n, k // 16), np.int32)
    quantize_rows_8bit(x, block, hi, even, odd, scale, sums16, sums32)
    q, d, s = llama_cpp_activations(x, block)
    assert np.array_equal(hi.reshape(q.shape), q)
    assert np.array_equal(sums16, q.reshape(n, k // 16, 16).sum(-1))
    assert np.array_equal(scale, np.repeat(d[..., 0], block // 32, axis=1))
    assert np.array_equal(even.reshape(n, -1, 2), hi.reshape(n, -1, 4)[:, :, 0::2])
    assert np.array_equal(odd.reshape(n, -1, 2), hi.reshape(n, -1, 4)[:, :, 1::2])
    if block == 32:
        assert np.array_equal(sums32, s[..., 0])


@pytest.mark.parametrize("ttype", SUPPORTED_TYPES, ids=lambda t: t.name)
def test_batch_rows_equal_single_token_products(ttype):
    """A token's output does not depend on the batch it runs in: bit for bit."""
    rng = np.random.default_rng(99)
    weight, _, _ = random_weight(ttype, 32, 256, rng)
    x = rng.standard_normal((5, 256)).astype(np.float32)
    batch = matmul(weight, x)
    for t in range(5):
        assert np.array_equal(batch[t], matvec(weight, x[t]))


def test_width_mismatch_is_an_error():
    weight, _, _ = random_weight(T.Q4_0, 16, 64, np.random.default_rng(0))
    with pytest.raises(ValueError, match="width 64"):
        matmul(weight, np.zeros((1, 32), np.float32))
