"""The KV cache: keys and values in a pool of blocks of ops.TILE positions that the slots share.

A slot (one sequence) is a row of the block table: its tile i (positions i*TILE .. i*TILE+TILE-1)
lives in block table[slot, i]. Blocks are taken from the pool as positions are first written and
given back when a slot lets them go, so memory follows the tokens in use, not slots x context
(as vLLM's paged attention and llama.cpp's unified cache). Slots with a common prefix hold the
same blocks (`share`); a block held by several is copied before one of them writes into it.
Layers that attend to a sliding window (Gemma 3: 5 of every 6) have a pool of their own, which
gives a slot's blocks back as they fall out of its window: their memory follows the window, not
the context (llama.cpp's SWA cache does the same).
"""
from __future__ import annotations

import math
import mmap

import numpy as np

from . import ops
from .config import ModelConfig

# as llama.cpp's -ctk/-ctv (f16 is its default too); q8_0 keeps int8 values and, per 32 of a
# position's dimensions, a scale (float16-rounded, as llama.cpp's, but held as float32)
KV_TYPES = {"f32": np.float32, "f16": np.float16, "q8_0": np.int8}
Q8 = ops.Q8  # values per q8_0 scale


def quantize_q8_0(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (..., d) float32 -> int8 values and float32 scales (..., d / 32), as llama.cpp's
    quantize_row_q8_0 (reference): scale = max |x| / 127, value = round(x / scale) half away from
    zero, the scale stored as float16."""
    blocks = x.reshape(*x.shape[:-1], -1, Q8).astype(np.float32)
    d = np.abs(blocks).max(axis=-1) / np.float32(127)
    inverse = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0)
    scaled = blocks * inverse[..., None]
    q = np.trunc(scaled + np.copysign(np.float32(0.5), scaled)).astype(np.int8)
    return q.reshape(x.shape), d.astype(np.float16).astype(np.float32)


class CacheFull(Exception):
    """Every block of the pool is held."""


def anonymous_zeros(shape: tuple[int, ...], dtype) -> np.ndarray:
    """Zeros in an anonymous mapping: pages come into memory as they are first written, 4 KB at a
    time (numpy asks large arrays for 2 MB huge pages, which a few tokens per block would fill)."""
    size = math.prod(shape) * np.dtype(dtype).itemsize
    return np.frombuffer(mmap.mmap(-1, max(size, 1)), dtype, math.prod(shape)).reshape(shape)


class KVCache:
    """The pools of a model's layers: one for the layers that see the whole context, one for
    those that see a sliding window; each slot claims, shares and gives back positions in both."""

    def __init__(self, c: ModelConfig, n_ctx: int, n_slots: int = 1, kv_type: str = "f16",
                 n_blocks: int | None = None, step_tokens: int | None = None):
        """`n_blocks`: of the full layers' pool (by default every slot's whole context); the
        windowed layers' pool holds as many sequences, each at most its window and a step's tokens
        (`step_tokens`, the most one step writes for a slot; None: a whole context)."""
        check_type(c, kv_type)
        self.n_ctx = n_ctx
        self.pools: list[BlockPool] = []
        self.where: dict[int, tuple[BlockPool, int]] = {}  # layer i: its pool, its index there
        n_blocks = n_blocks or n_slots * tiles(n_ctx)
        sequences = -(-n_blocks // tiles(n_ctx))  # (whole contexts the full layers' pool holds)
        for layers, window in self.groups(c):
            blocks = sequences * self.blocks_per_sequence(n_ctx, window, step_tokens) if window else n_blocks
            self.pools.append(BlockPool(c, len(layers), n_ctx, n_slots, kv_type, blocks, window))
            self.where.update((i, (self.pools[-1], j)) for j, i in enumerate(layers))

    @staticmethod
    def groups(c: ModelConfig) -> list[tuple[list[int], int]]:
        """(layers, window) of each pool: those that see the whole context (window 0), those that
        see a sliding window."""
        windowed = set(c.swa_layers)
        groups = [([i for i in range(c.n_layers) if i not in windowed], 0), (sorted(windowed), c.sliding_window)]
        return [(layers, window) for layers, window in groups if layers]

    @staticmethod
    def blocks_per_sequence(n_ctx: int, window: int, step_tokens: int | None) -> int:
        """The most blocks a sequence holds in a pool: its whole context, or with a window the
        tiles that its window and a step's tokens span, and one more (BlockPool.blocks_needed
        counts a step's new blocks before the ones it gives back)."""
        if not window or step_tokens is None:
            return tiles(n_ctx)
        return min(tiles(n_ctx), tiles(window + step_tokens) + 2)

    @staticmethod
    def tiles(n_positions: int) -> int:
        return tiles(n_positions)

    @staticmethod
    def size(c: ModelConfig, n_ctx: int, n_slots: int, kv_type: str = "f16", step_tokens: int | None = None) -> int:
        """Bytes of the pools with blocks for n_slots sequences of n_ctx positions (in windowed
        layers, their windows and a step of `step_tokens`)."""
        return sum(BlockPool.size(c, len(layers), n_slots * KVCache.blocks_per_sequence(n_ctx, window, step_tokens),
                                  kv_type) for layers, window in KVCache.groups(c))

    def layer(self, i: int) -> tuple[np.ndarray, ...]:
        """Layer i's keys, values, their scales and its pool's block table, as ops.attention takes them."""
        pool, j = self.where[i]
        return (*pool.layer(j), pool.table)

    def store(self, i: int, slots: np.ndarray, positions: np.ndarray, k: np.ndarray, v: np.ndarray) -> None:
        pool, j = self.where[i]
        pool.store(j, slots, positions, k, v)

    def fits(self, claims: list[tuple[int, int, int]]) -> bool:
        """Whether every pool has the blocks these (slot, start, end) claims would take."""
        return all(sum(pool.blocks_needed(*claim) for claim in claims) <= len(pool.free) for pool in self.pools)

    def claim(self, slot: int, start: int, end: int) -> None:
        """Positions start..end-1 of a slot made writable in every pool (see BlockPool.claim)."""
        if not self.fits([(slot, start, end)]):
            full = next(p for p in self.pools if p.blocks_needed(slot, start, end) > len(p.free))
            raise CacheFull(f"the KV cache's {len(full.holders)} blocks of {ops.TILE} positions are all in use")
        for pool in self.pools:
            pool.claim(slot, start, end)

    def truncate(self, slot: int, n: int) -> None:
        for pool in self.pools:
            pool.truncate(slot, n)

    def share(self, src: int, dst: int, n: int) -> None:
        for pool in self.pools:
            pool.share(src, dst, n)

    def usage(self) -> float:
        """The fraction of the full layers' pool in use (vLLM's kv_cache_usage_perc: blocks held
        over blocks in the pool; a finished prompt kept for prefix reuse holds its blocks)."""
        pool = self.pools[0]
        return 1 - len(pool.free) / len(pool.holders)

    block_size = ops.TILE  # positions per block

    @property
    def n_blocks(self) -> int:
        """Blocks in the full layers' pool."""
        return len(self.pools[0].holders)

    def reusable(self, slot: int, n: int) -> int:
        """How many of a slot's first n positions a sequence can go on from: n, or 0 where a
        windowed pool has given back positions that position n still sees."""
        return n if all(pool.holds_window(slot, n) for pool in self.pools) else 0


def check_type(c: ModelConfig, kv_type: str) -> None:
    """ValueError unless a cache of this type can hold this model's keys and values."""
    if kv_type not in KV_TYPES:
        raise ValueError(f"unknown KV cache type {kv_type!r}: expected one of {', '.join(KV_TYPES)}")
    if kv_type == "q8_0" and c.head_dim % Q8:
        raise ValueError(f"a q8_0 KV cache needs a head dimension divisible by {Q8}, not {c.head_dim}")


def tiles(n_positions: int) -> int:
    return -(-n_positions // ops.TILE)


class BlockPool:
    """Keys and values of some layers, float16 (the default), float32 or q8_0, a block per tile of
    one slot: values (n_layers, n_blocks, kv_heads, TILE, head_dim), keys transposed within each
    block (n_layers, n_blocks, kv_heads, head_dim, TILE), as ops.attention reads them; q8_0's
    scales likewise, one per 32 dimensions: (n_layers, n_blocks, kv_heads, TILE, head_dim / 32)
    and (n_layers, n_blocks, kv_heads, head_dim / 32, TILE) (other types: one unused scale). The
    pool holds `n_blocks` (KVCache says how many); with a `window`,
    a slot's blocks wholly before the window of the positions it writes are given back."""

    def __init__(self, c: ModelConfig, n_layers: int, n_ctx: int, n_slots: int, kv_type: str, n_blocks: int,
                 window: int = 0):
        self.n_ctx, self.n_slots, self.window = n_ctx, n_slots, window
        k_shape, v_shape, k_scale_shape, v_scale_shape = self.shapes(c, n_layers, n_blocks, kv_type)
        self.k = anonymous_zeros(k_shape, KV_TYPES[kv_type])
        self.v = anonymous_zeros(v_shape, KV_TYPES[kv_type])
        self.k_scales = anonymous_zeros(k_scale_shape, np.float32)
        self.v_scales = anonymous_zeros(v_scale_shape, np.float32)
        self.table = np.full((n_slots, tiles(n_ctx)), -1, np.int32)  # -1: no block yet
        self.holders = np.zeros(n_blocks, np.int32)  # slots holding each block
        self.free = list(range(n_blocks - 1, -1, -1))  # popped from the end: low blocks first

    @staticmethod
    def shapes(c: ModelConfig, n_layers: int, n_blocks: int, kv_type: str) -> tuple[tuple[int, ...], ...]:
        """Of keys, values, and their scales."""
        scales = c.head_dim // Q8 if kv_type == "q8_0" else 1
        shape = (n_layers, n_blocks if kv_type == "q8_0" else 1, c.n_kv_heads)
        return ((n_layers, n_blocks, c.n_kv_heads, c.head_dim, ops.TILE),
                (n_layers, n_blocks, c.n_kv_heads, ops.TILE, c.head_dim),
                (*shape, scales, ops.TILE if kv_type == "q8_0" else 1), (*shape, ops.TILE if kv_type == "q8_0" else 1, scales))

    @staticmethod
    def size(c: ModelConfig, n_layers: int, n_blocks: int, kv_type: str = "f16") -> int:
        """Bytes of a pool of n_blocks: keys, values, scales."""
        k, v, k_scales, v_scales = BlockPool.shapes(c, n_layers, n_blocks, kv_type)
        return ((math.prod(k) + math.prod(v)) * np.dtype(KV_TYPES[kv_type]).itemsize
                + (math.prod(k_scales) + math.prod(v_scales)) * 4)

    def layer(self, i: int) -> tuple[np.ndarray, ...]:
        """Layer i's keys, values and their scales as ops.attention takes them (float16 as its
        bits: numba has no float16 arithmetic)."""
        scales = self.k_scales[i].reshape(-1), self.v_scales[i].reshape(-1)
        if self.k.dtype == np.float16:
            return self.k[i].view(np.uint16), self.v[i].view(np.uint16), *scales
        return self.k[i], self.v[i], *scales

    def blocks_needed(self, slot: int, start: int, end: int) -> int:
        """Blocks `claim(slot, start, end)` would take from the pool (less, with a window, those
        it gives back first)."""
        held = self.table[slot, start // ops.TILE:tiles(end)]
        needed = int(np.sum((held < 0) | (self.holders[np.maximum(held, 0)] > 1)))
        if self.window:
            gone = self.table[slot, :self.first_seen(start)]
            needed -= int(np.sum((gone >= 0) & (self.holders[np.maximum(gone, 0)] == 1)))
        return max(needed, 0)

    def claim(self, slot: int, start: int, end: int) -> None:
        """Make positions start..end-1 of a slot writable: a block for each tile that has none,
        a copy of each block another slot also holds (KVCache.claim checks there are enough).
        With a window, first give back the tiles that position `start` no longer sees."""
        if self.window:
            self.release(slot, 0, self.first_seen(start))
        for tile in range(start // ops.TILE, tiles(end)):
            held = self.table[slot, tile]
            if held >= 0 and self.holders[held] == 1:
                continue
            block = self.free.pop()
            self.holders[block] = 1
            if held >= 0:  # shared: this slot writes into its own copy
                self.k[:, block], self.v[:, block] = self.k[:, held], self.v[:, held]
                if self.k.dtype == np.int8:
                    self.k_scales[:, block], self.v_scales[:, block] = self.k_scales[:, held], self.v_scales[:, held]
                self.holders[held] -= 1
            self.table[slot, tile] = block

    def truncate(self, slot: int, n: int) -> None:
        """The slot keeps only its first n positions: blocks wholly past them go back to the pool
        (the rest of the last one is overwritten before it is read)."""
        self.release(slot, tiles(n), self.table.shape[1])

    def release(self, slot: int, first: int, end: int) -> None:
        """The slot lets go of its tiles first..end-1."""
        for tile in range(first, end):
            held = self.table[slot, tile]
            if held >= 0:
                self.holders[held] -= 1
                if self.holders[held] == 0:
                    self.free.append(held)
                self.table[slot, tile] = -1

    def share(self, src: int, dst: int, n: int) -> None:
        """Slot dst holds slot src's first n positions: the same blocks, none copied."""
        self.truncate(dst, 0)
        blocks = self.table[src, :tiles(n)]
        self.table[dst, :len(blocks)] = blocks
        self.holders[blocks[blocks >= 0]] += 1

    def first_seen(self, position: int) -> int:
        """The first tile a token at `position` sees (0 without a window)."""
        return max(0, position + 1 - self.window) // ops.TILE if self.window else 0

    def holds_window(self, slot: int, n: int) -> bool:
        """Whether the slot still holds every position that a token at position n sees before it."""
        return n == 0 or bool((self.table[slot, self.first_seen(n):tiles(n)] >= 0).all())

    def store(self, layer: int, slots: np.ndarray, positions: np.ndarray, k: np.ndarray, v: np.ndarray) -> None:
        """Keys and values (n, kv_heads, head_dim) of n tokens at these slots and (claimed)
        positions, rounded as llama.cpp stores them: to the nearest float16, or to q8_0."""
        blocks, offsets = self.table[slots, positions // ops.TILE], positions % ops.TILE
        if self.k.dtype == np.int8:
            k, k_scales = quantize_q8_0(k)
            v, v_scales = quantize_q8_0(v)
            self.k_scales[layer, blocks, :, :, offsets] = k_scales
            self.v_scales[layer, blocks, :, offsets] = v_scales
        self.k[layer, blocks, :, :, offsets] = k
        self.v[layer, blocks, :, offsets] = v
