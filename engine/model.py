"""The model: weights (repacked for the kernels, see packed.py), a KV cache, the forward pass.

The forward pass follows meta-llama/llama3's `model.py`; weights keep its role names (wq, wk, wv,
wo; w1 = gate, w2 = down, w3 = up) and `GGUF_NAMES` maps them to the file's tensors. Projections
that read one input are packed side by side (wqkv, w13) so each is one product. Other families
differ in a few steps, each marked here: biases on Q, K and V (Qwen 2), RMSNorm on each head's
queries and keys (Qwen 3), RoPE's pairing (config.Family); Phi-3 stores wq, wk, wv as one
tensor and w1, w3 as one, which are read as the packed products they already are.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

from . import ops
from .c_heap import keep_step_memory
from .config import ModelConfig
from .errors import InvalidRequest
from .gguf_file import GGUFError, GGUFFile, Tensor
from .kernels import SUPPORTED_TYPES, Activations, Weight, matmul
from .kernels.serial import threaded
from .kv_cache import KVCache
from .packed import packed_weights

GGUF_NAMES = {
    "attn_norm": "blk.{i}.attn_norm.weight", "wq": "blk.{i}.attn_q.weight",
    "wk": "blk.{i}.attn_k.weight", "wv": "blk.{i}.attn_v.weight", "wo": "blk.{i}.attn_output.weight",
    "ffn_norm": "blk.{i}.ffn_norm.weight", "w1": "blk.{i}.ffn_gate.weight",
    "w2": "blk.{i}.ffn_down.weight", "w3": "blk.{i}.ffn_up.weight",
    # where a family has them
    "wqkv": "blk.{i}.attn_qkv.weight",  # Phi-3: wq, wk and wv in one tensor (and w1, w3 in ffn_up)
    "bq": "blk.{i}.attn_q.bias", "bk": "blk.{i}.attn_k.bias", "bv": "blk.{i}.attn_v.bias",
    "q_norm": "blk.{i}.attn_q_norm.weight", "k_norm": "blk.{i}.attn_k_norm.weight",
    "attn_post_norm": "blk.{i}.post_attention_norm.weight", "ffn_post_norm": "blk.{i}.post_ffw_norm.weight",
}

Projection = tuple[Weight, ...]  # weights whose outputs, side by side, form one projection


@dataclass
class Layer:
    attn_norm: np.ndarray  # (dim,)
    wqkv: Projection       # (q_dim + 2 kv_dim, dim): wq, wk, wv
    wo: Weight             # (dim, q_dim)
    ffn_norm: np.ndarray   # (dim,)
    w13: Projection        # (2 ffn_dim, dim): w1 = gate, w3 = up
    w2: Weight             # (dim, ffn_dim) down
    bqkv: np.ndarray | None = None    # (q_dim + 2 kv_dim,) Qwen 2
    q_norm: np.ndarray | None = None  # (head_dim,) Qwen 3, Gemma 3
    k_norm: np.ndarray | None = None
    attn_post_norm: np.ndarray | None = None  # (dim,) Gemma 3: on attention's and the MLP's outputs
    ffn_post_norm: np.ndarray | None = None


@dataclass
class Weights:
    token_embd: Tensor          # (vocab, dim), as in the file: rows are looked up, not multiplied
    layers: list[Layer]
    output_norm: np.ndarray     # (dim,)
    output: Weight              # (vocab, dim); token_embd's values when embeddings are tied
    rope_freqs: np.ndarray | None  # (head_dim // 2,) long-context factors, Llama 3.1+

    @classmethod
    def from_gguf(cls, f: GGUFFile, c: ModelConfig) -> "Weights":
        """Every tensor checked (present, shaped by the config, of a type the kernels have),
        grouped into the products the forward pass runs, repacked (packed.py), then assembled."""
        def norm(name: str, size: int = c.dim) -> np.ndarray:
            return checked(f, name, (size,), (T.F32,)).data

        def optional(name: str, size: int) -> np.ndarray | None:
            return norm(name, size) if name in f.tensors else None

        def qkv(n: dict) -> list[Tensor]:  # (Phi-3: one tensor)
            if n["wqkv"] in f.tensors:
                return [checked(f, n["wqkv"], (c.q_dim + 2 * c.kv_dim, c.dim))]
            return [checked(f, n["wq"], (c.q_dim, c.dim)), checked(f, n["wk"], (c.kv_dim, c.dim)),
                    checked(f, n["wv"], (c.kv_dim, c.dim))]

        def gate_up(n: dict) -> list[Tensor]:  # (Phi-3: one tensor, ffn_up)
            if n["w1"] not in f.tensors:
                return [checked(f, n["w3"], (2 * c.ffn_dim, c.dim))]
            return [checked(f, n["w1"], (c.ffn_dim, c.dim)), checked(f, n["w3"], (c.ffn_dim, c.dim))]

        def qkv_bias(n: dict) -> np.ndarray | None:  # (Qwen 2; zeros for a part without one)
            sizes = (c.q_dim, c.kv_dim, c.kv_dim)
            parts = [optional(n[b], size) for b, size in zip(("bq", "bk", "bv"), sizes)]
            if all(p is None for p in parts):
                return None
            return np.concatenate([p if p is not None else np.zeros(size, np.float32) for p, size in zip(parts, sizes)])

        if "rope_factors_long.weight" in f.tensors:  # (Phi-3's 128k files)
            raise GGUFError(f"{f.path}: unsupported RoPE scaling: long-context factors (rope_factors_long)")
        products = Products()
        plan = []  # per layer: its norms, and the names of its packed products
        for i in range(c.n_layers):
            n = {role: name.format(i=i) for role, name in GGUF_NAMES.items()}
            plan.append(dict(
                attn_norm=norm(n["attn_norm"]), ffn_norm=norm(n["ffn_norm"]), bqkv=qkv_bias(n),
                q_norm=optional(n["q_norm"], c.head_dim), k_norm=optional(n["k_norm"], c.head_dim),
                attn_post_norm=optional(n["attn_post_norm"], c.dim), ffn_post_norm=optional(n["ffn_post_norm"], c.dim),
                wqkv=products.add(f"blk.{i}.attn_qkv", qkv(n)),
                wo=products.add(n["wo"], [checked(f, n["wo"], (c.dim, c.q_dim))]),
                w13=products.add(f"blk.{i}.ffn_gate_up", gate_up(n)),
                w2=products.add(n["w2"], [checked(f, n["w2"], (c.dim, c.ffn_dim))])))
        token_embd = checked(f, "token_embd.weight", (c.vocab_size, c.dim))
        tied = "output.weight" not in f.tensors
        products.add("output", [token_embd if tied else checked(f, "output.weight", (c.vocab_size, c.dim))])
        output_norm = norm("output_norm.weight")
        rope_freqs = (checked(f, "rope_freqs.weight", ((c.rope_dim or c.head_dim) // 2,), (T.F32,)).data
                      if "rope_freqs.weight" in f.tensors else None)
        packed = packed_weights(f, products.groups)
        layers = [Layer(attn_norm=p["attn_norm"], wqkv=tuple(packed[k] for k in p["wqkv"]), wo=packed[p["wo"][0]],
                        ffn_norm=p["ffn_norm"], w13=tuple(packed[k] for k in p["w13"]), w2=packed[p["w2"][0]],
                        bqkv=p["bqkv"], q_norm=p["q_norm"], k_norm=p["k_norm"],
                        attn_post_norm=p["attn_post_norm"], ffn_post_norm=p["ffn_post_norm"])
                  for p in plan]
        return cls(token_embd, layers, output_norm, packed["output"], rope_freqs)


def checked(f: GGUFFile, name: str, shape: tuple[int, ...], types=SUPPORTED_TYPES) -> Tensor:
    """The file's tensor `name`, which must have this shape and one of these types."""
    t = f.tensors.get(name)
    if t is None:
        raise GGUFError(f"{f.path}: missing tensor {name!r}")
    if t.shape != shape:
        raise GGUFError(f"{f.path}: tensor {name!r} has shape {t.shape}, expected {shape}")
    if t.type not in types:
        raise GGUFError(f"{f.path}: tensor {name!r} has unsupported type {t.type.name}")
    return t


class Products:
    """The groups of tensors to repack: tensors that read one input and share a type become one
    packed weight (one product per step); mixed types stay one each."""

    def __init__(self):
        self.groups: dict[str, list[Tensor]] = {}

    def add(self, name: str, parts: list[Tensor]) -> list[str]:
        """The packed weights' names for these parts, side by side."""
        if len({p.type for p in parts}) == 1:
            self.groups[name] = parts
            return [name]
        names = [f"{name}.{j}" for j in range(len(parts))]
        self.groups.update((n, [p]) for n, p in zip(names, parts))
        return names


def project(projection: Projection, x: Activations) -> np.ndarray:
    """x times each weight of a projection, outputs side by side: (n, total rows)."""
    if len(projection) == 1:
        return matmul(projection[0], x)
    return np.concatenate([matmul(w, x) for w in projection], axis=1)


# Tokens per step of `forward`. A step's arrays past 32 MB (glibc's largest mapping threshold; below
# it they come from the heap, whose freed pages c_heap.keep_step_memory keeps) are mapped afresh each
# time and every page faulted in: 512-token steps of a Mistral-shaped file
# (its gate and up outputs 58 MB) spent 10% of their products' time so. 128 tokens keep them under
# it for an FFN up to ~30k wide, and cost no extra pass over the weights (each product already
# takes 128 tokens at a time: kernels.TOKENS_PER_CALL).
FORWARD_PIECE = 128


@dataclass
class Span:
    """Tokens of one slot for a step: ids at positions start, start + 1, ... of KV slot `slot`;
    the step returns the logits after each of its last `logits` tokens (a draft's check needs
    every one: speculation.py)."""
    slot: int
    start: int
    tokens: list[int]
    logits: int = 1


def embed(f: GGUFFile, token_embd: Tensor, tokens: np.ndarray) -> np.ndarray:
    """Rows of the embedding table, dequantized: (n, dim) float32."""
    rows = f.read_rows(token_embd, tokens)
    if token_embd.type == T.F32:
        return rows.astype(np.float32)
    raw = rows.view(np.uint8) if token_embd.type in (T.F16, T.BF16) else rows
    return dequantize(raw, token_embd.type).reshape(len(tokens), -1).astype(np.float32)


class Llama:
    def __init__(self, path: str | Path):
        self.file = GGUFFile(path)
        self.config = ModelConfig.from_gguf(self.file)
        self.weights = Weights.from_gguf(self.file, self.config)
        keep_step_memory()  # the steps' arrays, reused rather than faulted in afresh

    def new_cache(self, n_ctx: int, n_slots: int = 1, kv_type: str = "f16", n_blocks: int | None = None,
                  step_tokens: int | None = None) -> KVCache:
        return KVCache(self.config, self.config.context(n_ctx), n_slots, kv_type, n_blocks, step_tokens)

    def check_tokens(self, tokens) -> None:
        """Token ids must index the vocabulary (the embedding table and the logits)."""
        ids = np.asarray(tokens)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise InvalidRequest(f"token ids must be in [0, {self.config.vocab_size}), "
                                 f"got {ids.min()}..{ids.max()}", param="prompt")

    def forward(self, tokens, start: int, cache: KVCache, all_logits: bool = False) -> np.ndarray:
        """One sequence (slot 0): tokens (n,) at positions start..start+n-1. Returns logits
        (n, vocab) if `all_logits`, else those of the last token (vocab,). Runs steps of at most
        FORWARD_PIECE tokens: the same results (a token's maths does not depend on its batch),
        without the page faults of a step's larger arrays (see FORWARD_PIECE)."""
        tokens = list(tokens)
        logits = [self.step([Span(0, start + i, tokens[i:i + FORWARD_PIECE])], cache, all_logits)
                  for i in range(0, max(len(tokens), 1), FORWARD_PIECE)]  # (no tokens: step's error)
        return np.concatenate(logits) if all_logits else logits[-1][0]

    def step(self, spans: list[Span], cache: KVCache, all_logits: bool = False,
             with_hidden: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Run spans of several slots as one batch: every weight is read once for all of them,
        and each token's result is the same as if it ran alone. Appends their keys and values to
        `cache`. Returns the logits after each span's last `span.logits` tokens, span after
        span (their sum, vocab), or after every token (n, vocab) if `all_logits`; `with_hidden`:
        and every token's final hidden state, normed (n, dim), which embeddings pool."""
        c, w = self.config, self.weights
        tokens = np.concatenate([np.asarray(sp.tokens, dtype=np.int64) for sp in spans])
        positions = np.concatenate([np.arange(sp.start, sp.start + len(sp.tokens)) for sp in spans])
        slots = np.concatenate([np.full(len(sp.tokens), sp.slot) for sp in spans])
        n = len(tokens)
        if n == 0 or any(not sp.tokens for sp in spans):
            raise ValueError("every span needs at least one token")
        if positions.max() >= cache.n_ctx:
            raise ValueError(f"context overflow: {positions.max() + 1} tokens do not fit in {cache.n_ctx}")
        for sp in spans:
            cache.claim(sp.slot, sp.start, sp.start + len(sp.tokens))
        rope = {False: ops.rope_tables(positions, c.rope_dim or c.head_dim, c.rope_base, w.rope_freqs)}
        if c.swa_layers:  # (Gemma 3: the sliding-window layers have their own RoPE base)
            rope[True] = ops.rope_tables(positions, c.rope_dim or c.head_dim, c.rope_base_swa, w.rope_freqs)
        blocks, heads_per_job = ops.attention_jobs(slots, positions, c.n_heads, c.n_kv_heads, numba.get_num_threads())
        x = embed(self.file, w.token_embd, tokens)  # (n, dim)
        if c.family.scale_embeddings:
            x *= np.float32(np.sqrt(c.dim))
        for i, layer in enumerate(w.layers):
            # attention, with its input normed and quantized once for Q, K and V
            h = Activations(ops.rmsnorm(x, layer.attn_norm, c.rms_eps))
            qkv = project(layer.wqkv, h)
            if layer.bqkv is not None:
                qkv += layer.bqkv
            q = np.ascontiguousarray(qkv[:, :c.q_dim]).reshape(n, c.n_heads, c.head_dim)
            k = np.ascontiguousarray(qkv[:, c.q_dim:c.q_dim + c.kv_dim]).reshape(n, c.n_kv_heads, c.head_dim)
            if layer.q_norm is not None:
                q = ops.rmsnorm(q.reshape(-1, c.head_dim), layer.q_norm, c.rms_eps).reshape(q.shape)
                k = ops.rmsnorm(k.reshape(-1, c.head_dim), layer.k_norm, c.rms_eps).reshape(k.shape)
            windowed = i in c.swa_layers
            ops.apply_rope(q, *rope[windowed], c.family.rope_halves)
            ops.apply_rope(k, *rope[windowed], c.family.rope_halves)
            cache.store(i, slots, positions, k, qkv[:, c.q_dim + c.kv_dim:].reshape(n, c.n_kv_heads, c.head_dim))
            attn = np.empty_like(q)
            threaded(ops.attention)(q, *cache.layer(i), slots, positions, blocks, heads_per_job, attn,
                                    c.query_scale or 1 / np.sqrt(c.head_dim), c.sliding_window if windowed else 0)
            x = x + post_norm(matmul(layer.wo, attn.reshape(n, c.q_dim)), layer.attn_post_norm, c.rms_eps)  # residual
            # feed-forward: SwiGLU, or GELU-gated (Gemma)
            h = Activations(ops.rmsnorm(x, layer.ffn_norm, c.rms_eps))
            gate_up = project(layer.w13, h)
            x = x + post_norm(matmul(layer.w2, ops.geglu(gate_up) if c.family.gelu else threaded(ops.swiglu)(gate_up)),
                              layer.ffn_post_norm, c.rms_eps)
        ends = np.cumsum([len(sp.tokens) for sp in spans])
        rows = np.concatenate([np.arange(end - sp.logits, end) for sp, end in zip(spans, ends)])
        hidden = ops.rmsnorm(x if all_logits or with_hidden else x[rows], w.output_norm, c.rms_eps)
        logits = matmul(w.output, hidden if all_logits or not with_hidden else hidden[rows])
        if c.logit_softcap:
            logits = np.float32(c.logit_softcap) * np.tanh(logits / np.float32(c.logit_softcap))
        return (logits, hidden) if with_hidden else logits


def post_norm(x: np.ndarray, weight: np.ndarray | None, eps: float) -> np.ndarray:
    """A sublayer's output, normed where the family norms it (Gemma 3)."""
    return x if weight is None else ops.rmsnorm(x, weight, eps)
