"""Attention (engine/ops.py) against float64 numpy softmax(q k^T / sqrt(d)) v over the cache, and
each token's result the same bits whatever the batch around it and however the work is split."""
import numpy as np
import pytest

from llamba.engine import ops
from llamba.engine.kv_cache import KV_TYPES, quantize_q8_0


def reference(q, k, v, slots, positions, window=0):
    """Plain causal grouped-query attention in float64; k, v: (n_slots, ctx, kv_heads, head_dim);
    with a window, over the last `window` positions."""
    n, heads, head_dim = q.shape
    n_rep = heads // k.shape[2]
    out = np.empty((n, heads, head_dim))
    for t in range(n):
        for h in range(heads):
            seen = slice(max(0, positions[t] + 1 - window) if window else 0, positions[t] + 1)
            keys = k[slots[t], seen, h // n_rep].astype(np.float64)
            scores = keys @ q[t, h].astype(np.float64) / np.sqrt(head_dim)
            weights = np.exp(scores - scores.max())
            out[t, h] = weights / weights.sum() @ v[slots[t], seen, h // n_rep]
    return out


def run(q, k, v, slots, positions, threads=2, kv_type="f32", window=0, attention=ops.attention):
    """attention (ops.attention, or its twin) with k and v (float32) stored as a KVCache of kv_type
    stores them, in blocks of a tile, k transposed within each, the blocks of the slots' tiles in a
    shuffled order; float16 as its bits, as KVCache.layer passes them."""
    n_slots, ctx, kv_heads, head_dim = k.shape
    tiles = -(-ctx // ops.TILE)

    def tiled(x):  # (n_slots * tiles, kv_heads, TILE, last axis)
        padded = np.zeros((n_slots, tiles * ops.TILE, kv_heads, x.shape[-1]), x.dtype)
        padded[:, :ctx] = x
        return padded.reshape(n_slots * tiles, ops.TILE, kv_heads, -1).transpose(0, 2, 1, 3)
    order = np.random.default_rng(1).permutation(n_slots * tiles)  # block b holds tile order[b]
    table = np.argsort(order).astype(np.int32).reshape(n_slots, tiles)
    (k, k_scales), (v, v_scales) = (stored(x, kv_type) for x in (k, v))
    k_blocks = np.ascontiguousarray(tiled(k).transpose(0, 1, 3, 2)[order])
    v_blocks = np.ascontiguousarray(tiled(v)[order])
    k_scales = np.ascontiguousarray(tiled(k_scales).transpose(0, 1, 3, 2)[order]).reshape(-1)
    v_scales = np.ascontiguousarray(tiled(v_scales)[order]).reshape(-1)
    if kv_type == "f16":
        k_blocks, v_blocks = k_blocks.view(np.uint16), v_blocks.view(np.uint16)
    blocks, heads_per_job = ops.attention_jobs(slots, positions, q.shape[1], kv_heads, threads)
    out = np.empty_like(q)
    attention(q, k_blocks, v_blocks, k_scales, v_scales, table, slots, positions, blocks, heads_per_job, out,
              1 / np.sqrt(head_dim), window)
    return out


def stored(x, kv_type):
    """What a cache of kv_type holds for float32 x: values, and scales (one per 32 dimensions for
    q8_0; else one, unused)."""
    if kv_type == "q8_0":
        return quantize_q8_0(x)
    return x.astype(KV_TYPES[kv_type]), np.zeros((*x.shape[:-1], 1), np.float32)


def held(x, kv_type):
    """The float64 values the cache holds for x."""
    values, scales = stored(x, kv_type)
    if kv_type == "q8_0":
        return (values.reshape(*scales.shape, -1) * scales[..., None].astype(np.float64)).reshape(x.shape)
    return values.astype(np.float64)


@pytest.mark.parametrize("heads, kv_heads, head_dim, kv_type", [
    (*shape, kv_type) for shape in [(4, 2, 16), (9, 3, 64), (32, 8, 64), (8, 8, 128)] for kv_type in ("f32", "f16", "q8_0")
    if not (kv_type == "q8_0" and shape[2] % 32)])  # (q8_0 scales 32 dimensions at a time)
def test_attention_matches_float64_reference(heads, kv_heads, head_dim, kv_type):
    """Keys and values are read exactly as stored: against the reference over the same values
    (float16, or q8_0's values times their scales)."""
    rng = np.random.default_rng(heads)
    ctx = 150  # not a whole number of tiles
    k, v = (rng.standard_normal((2, ctx, kv_heads, head_dim)).astype(np.float32) for _ in range(2))
    # slot 0: a 70-token prompt; slot 1: one token decoding at the end of the context
    slots = np.array([0] * 70 + [1])
    positions = np.array(list(range(3, 73)) + [ctx - 1])
    q = (3 * rng.standard_normal((len(slots), heads, head_dim))).astype(np.float32)
    out = run(q, k, v, slots, positions, kv_type=kv_type)
    assert np.abs(out - reference(q, held(k, kv_type), held(v, kv_type), slots, positions)).max() < 1e-5


def test_each_token_gets_the_same_bits_alone_in_any_batch_and_any_split():
    rng = np.random.default_rng(0)
    k, v = (rng.standard_normal((2, 100, 3, 64)).astype(np.float32) for _ in range(2))
    slots, positions = np.array([0] * 40 + [1] * 3), np.array(list(range(40)) + [90, 91, 92])
    q = rng.standard_normal((len(slots), 9, 64)).astype(np.float32)
    batched = run(q, k, v, slots, positions)
    for threads in (1, 64):  # a job per KV head, or a job per query head
        for t in (0, 7, 8, 39, 41):
            alone = run(q[t:t + 1], k, v, slots[t:t + 1], positions[t:t + 1], threads)
            assert np.array_equal(alone[0], batched[t]), (threads, t)
        # the prompt in other pieces: 13 + 27 tokens
        pieces = [run(q[a:b], k, v, slots[a:b], positions[a:b], threads) for a, b in ((0, 13), (13, 40))]
        assert np.array_equal(np.concatenate(pieces), batched[:40])


@pytest.mark.parametrize("window", [1, 20, 32, 45, 64])
def test_sliding_window_attention_sees_only_its_window(window):
    """Gemma 3's sliding-window layers: each token attends to its last `window` positions (tile
    edges and windows shorter than a tile included), alone the same bits as in a batch."""
    rng = np.random.default_rng(window)
    k, v = (rng.standard_normal((2, 150, 2, 32)).astype(np.float32) for _ in range(2))
    slots, positions = np.array([0] * 70 + [1]), np.array(list(range(30, 100)) + [149])
    q = (3 * rng.standard_normal((len(slots), 4, 32))).astype(np.float32)
    out = run(q, k, v, slots, positions, window=window)
    assert np.abs(out - reference(q, k, v, slots, positions, window)).max() < 1e-5
    for t in (0, 9, 69, 70):
        assert np.array_equal(run(q[t:t + 1], k, v, slots[t:t + 1], positions[t:t + 1], window=window)[0], out[t])
