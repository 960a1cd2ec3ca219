"""Attention (engine/ops.py) against float64 numpy softmax(q k^T / sqrt(d)) v over the cache, and
each token's result the same bits whatever the batch around it and however the work is split."""
import numpy as np
import pytest

from llamba.engine import ops


def reference(q, k, v, slots, positions):
    """Plain causal grouped-query attention in float64; k, v: (n_slots, ctx, kv_heads, head_dim)."""
    n, heads, head_dim = q.shape
    n_rep = heads // k.shape[2]
    out = np.empty((n, heads, head_dim))
    for t in range(n):
        for h in range(heads):
            keys = k[slots[t], :positions[t] + 1, h // n_rep].astype(np.float64)
            scores = keys @ q[t, h].astype(np.float64) / np.sqrt(head_dim)
            weights = np.exp(scores - scores.max())
            out[t, h] = weights / weights.sum() @ v[slots[t], :positions[t] + 1, h // n_rep]
    return out


def run(q, k, v, slots, positions, threads=2):
    """ops.attention with k and v laid out in blocks of a tile, k transposed within each, as
    KVCache keeps them, the blocks of the slots' tiles in a shuffled order; float16 k and v passed
    as their bits, as KVCache.layer does."""
    n_slots, ctx, kv_heads, head_dim = k.shape
    tiles = -(-ctx // ops.TILE)

    def tiled(x):  # (n_slots * tiles, kv_heads, TILE, head_dim)
        padded = np.zeros((n_slots, tiles * ops.TILE, kv_heads, head_dim), x.dtype)
        padded[:, :ctx] = x
        return padded.reshape(n_slots * tiles, ops.TILE, kv_heads, head_dim).transpose(0, 2, 1, 3)
    order = np.random.default_rng(1).permutation(n_slots * tiles)  # block b holds tile order[b]
    table = np.argsort(order).astype(np.int32).reshape(n_slots, tiles)
    k_blocks = np.ascontiguousarray(tiled(k).transpose(0, 1, 3, 2)[order])
    v_blocks = np.ascontiguousarray(tiled(v)[order])
    if k.dtype == np.float16:
        k_blocks, v_blocks = k_blocks.view(np.uint16), v_blocks.view(np.uint16)
    blocks, heads_per_job = ops.attention_jobs(slots, positions, q.shape[1], kv_heads, threads)
    out = np.empty_like(q)
    ops.attention(q, k_blocks, v_blocks, table, slots, positions, blocks, heads_per_job, out)
    return out


@pytest.mark.parametrize("kv_type", [np.float32, np.float16])
@pytest.mark.parametrize("heads, kv_heads, head_dim", [(4, 2, 16), (9, 3, 64), (32, 8, 64), (8, 8, 128)])
def test_attention_matches_float64_reference(heads, kv_heads, head_dim, kv_type):
    """float16 keys and values are read exactly: against the reference over the same halves."""
    rng = np.random.default_rng(heads)
    ctx = 150  # not a whole number of tiles
    k, v = (rng.standard_normal((2, ctx, kv_heads, head_dim)).astype(kv_type) for _ in range(2))
    # slot 0: a 70-token prompt; slot 1: one token decoding at the end of the context
    slots = np.array([0] * 70 + [1])
    positions = np.array(list(range(3, 73)) + [ctx - 1])
    q = (3 * rng.standard_normal((len(slots), heads, head_dim))).astype(np.float32)
    out = run(q, k, v, slots, positions)
    assert np.abs(out - reference(q, k, v, slots, positions)).max() < 1e-5


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
