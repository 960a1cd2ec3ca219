"""The KV cache's block pool (engine/kv_cache.py): blocks taken as positions are first written and
given back, prefixes shared without copying, a shared block copied before one slot writes to it."""
import numpy as np
import pytest

from llamba.engine import ops
from llamba.engine.config import ModelConfig
from llamba.engine.kv_cache import CacheFull, KVCache

TILE = ops.TILE
CONFIG = ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, vocab_size=100, rms_eps=1e-5,
                     rope_base=10000.0, context_length=256)


def write(cache: KVCache, slot: int, start: int, end: int, value: float) -> None:
    """Claim positions start..end-1 of a slot and store `value` as every key and value there."""
    cache.claim(slot, start, end)
    positions = np.arange(start, end)
    k = np.full((len(positions), CONFIG.n_kv_heads, CONFIG.head_dim), value, np.float32)
    for layer in range(CONFIG.n_layers):
        cache.store(layer, np.full(len(positions), slot), positions, k, k)


def keys(cache: KVCache, slot: int, position: int) -> np.ndarray:
    block = cache.pools[0].table[slot, position // TILE]
    return cache.pools[0].k[:, block, :, :, position % TILE]


def test_blocks_are_taken_as_positions_are_written_and_given_back():
    cache = KVCache(CONFIG, 128, n_slots=2, n_blocks=5)
    write(cache, 0, 0, 40, 1.0)  # two tiles
    assert len(cache.pools[0].free) == 3 and (cache.pools[0].table[0, :2] >= 0).all() and (cache.pools[0].table[0, 2:] < 0).all()
    write(cache, 0, 40, 41, 2.0)  # within the second tile: nothing new
    assert len(cache.pools[0].free) == 3
    cache.truncate(0, 20)  # keeps the first tile
    assert len(cache.pools[0].free) == 4 and cache.pools[0].table[0, 1] < 0
    assert (keys(cache, 0, 19) == 1.0).all()


def test_a_shared_prefix_is_held_once_and_copied_only_where_written():
    cache = KVCache(CONFIG, 128, n_slots=2, n_blocks=8)
    write(cache, 0, 0, 70, 1.0)  # three tiles, the last one partly
    cache.share(0, 1, 70)
    assert (cache.pools[0].table[1, :3] == cache.pools[0].table[0, :3]).all() and len(cache.pools[0].free) == 5
    assert cache.pools[0].blocks_needed(1, 70, 71) == 1  # the shared third tile must be copied first
    write(cache, 1, 70, 72, 2.0)
    assert cache.pools[0].table[1, 2] != cache.pools[0].table[0, 2] and (cache.pools[0].table[1, :2] == cache.pools[0].table[0, :2]).all()
    assert (keys(cache, 1, 69) == 1.0).all() and (keys(cache, 1, 71) == 2.0).all()  # the copy, then the write
    assert (keys(cache, 0, 69) == 1.0).all() and (keys(cache, 0, 71) == 0.0).all()  # slot 0 untouched
    cache.truncate(0, 0)  # the blocks slot 1 still holds stay taken
    assert len(cache.pools[0].free) == 8 - 3


def test_a_full_pool_says_so():
    cache = KVCache(CONFIG, 128, n_slots=2, n_blocks=3)
    write(cache, 0, 0, 3 * TILE, 1.0)
    with pytest.raises(CacheFull, match="3 blocks of 32 positions are all in use"):
        cache.claim(1, 0, 1)
    assert cache.pools[0].table[1, 0] < 0  # nothing taken


def test_positions_not_yet_written_cost_no_memory():
    """The pool's pages come into memory as they are written (an anonymous mapping, no huge pages)."""
    big = ModelConfig(dim=512, n_layers=4, n_heads=8, n_kv_heads=8, ffn_dim=64, vocab_size=100, rms_eps=1e-5,
                      rope_base=10000.0, context_length=4096)
    cache = KVCache(big, 4096, n_slots=8)  # 8 x 4096 positions x 4 layers x 1 KB x 2 = 256 MB
    before = resident_kb()
    write_big = np.ones((TILE, 8, 64), np.float32)
    cache.claim(0, 0, TILE)
    for layer in range(4):
        cache.store(layer, np.zeros(TILE, int), np.arange(TILE), write_big, write_big)
    grown = resident_kb() - before
    assert grown < 4 * 1024, grown  # 4 layers x 2 x 32 KB written; far below the 256 MB reserved


def resident_kb() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_q8_0_stores_each_value_within_half_a_step_of_its_block_and_copies_scales_on_write():
    with pytest.raises(ValueError, match="divisible by 32, not 8"):
        KVCache(CONFIG, 128, kv_type="q8_0")
    wide = ModelConfig(dim=128, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=64, vocab_size=100, rms_eps=1e-5,
                       rope_base=10000.0, context_length=256)
    cache = KVCache(wide, 128, n_slots=2, kv_type="q8_0")
    x = np.random.default_rng(0).standard_normal((5, 1, 64)).astype(np.float32)
    cache.claim(0, 0, 5)
    cache.store(0, np.zeros(5, int), np.arange(5), x, -x)
    block = cache.pools[0].table[0, 0]
    keys = cache.pools[0].k[0, block, 0, :, :5].T * np.repeat(cache.pools[0].k_scales[0, block, 0, :, :5].T, 32, axis=1)
    step = np.abs(x[:, 0]).reshape(5, 2, 32).max(axis=-1) / 127
    assert (np.abs(keys - x[:, 0]) <= np.repeat(step, 32, axis=1) * 0.5 + 1e-6).all()
    cache.share(0, 1, 5)
    cache.claim(1, 5, 6)  # the shared block is copied, scales and all
    copy = cache.pools[0].table[1, 0]
    assert copy != block and (cache.pools[0].k_scales[0, copy] == cache.pools[0].k_scales[0, block]).all()
    assert (cache.pools[0].v_scales[0, copy] == cache.pools[0].v_scales[0, block]).all() and (cache.pools[0].v[0, copy] == cache.pools[0].v[0, block]).all()


def test_sliding_window_layers_hold_only_the_window():
    """Gemma 3's windowed layers (a pool of their own): a slot holds the tiles its next position
    still sees, gives the rest back as it goes on, and can go on only from where it holds them."""
    windowed = ModelConfig(dim=32, n_layers=3, n_heads=4, n_kv_heads=2, ffn_dim=64, vocab_size=100, rms_eps=1e-5,
                           rope_base=10000.0, context_length=1024, sliding_window=64, swa_layers=(0, 1))
    # two sequences' worth of blocks, at most 8 tokens a step (as the scheduler makes it)
    cache = KVCache(windowed, 1024, n_slots=2, n_blocks=2 * KVCache.tiles(1024), step_tokens=8)
    full, window = cache.pools
    assert cache.where[2] == (full, 0) and cache.where[1] == (window, 1)
    assert len(window.holders) == 2 * (KVCache.tiles(64 + 8) + 2) and len(full.holders) == 2 * KVCache.tiles(1024)
    assert KVCache.size(windowed, 1024, 2, step_tokens=8) < KVCache.size(windowed, 1024, 2) / 2
    for position in range(0, 600, 8):  # two long sequences, a few tokens a step: the small pool is enough
        for slot in (0, 1):
            cache.claim(slot, position, position + 8)
            held = (window.table[slot] >= 0).sum()
            assert held * TILE <= 64 + 8 + 2 * TILE, (position, held)  # the window, this step's tokens, two tile edges
    assert (full.table[0, :KVCache.tiles(600)] >= 0).all()  # every position, in the full layers
    assert cache.reusable(0, 600) == 600 and cache.reusable(0, 300) == 0  # 300's window was given back
    cache.truncate(1, 0)
    cache.share(0, 1, 600)
    assert (window.table[1] == window.table[0]).all() and cache.reusable(1, 600) == 600
    cache.truncate(0, 0)
    cache.truncate(1, 0)
    assert len(window.free) == len(window.holders) and len(full.free) == len(full.holders)
