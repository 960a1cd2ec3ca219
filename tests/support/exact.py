"""The exact computation a model's file describes, in float64 numpy: weights dequantized by
`gguf.quants`, activations, attention and RoPE in float64, no KV cache (every call recomputes its
tokens), GELU and SiLU by their formulas. It is the yardstick `<model>.exact.json` holds for the
families whose references are made here (tests/support/gemma3.py), written from the papers'
maths (and llama.cpp's graphs for the GGUF conventions), not from the engine's code. Slow and
plain on purpose; only the hyper-parameters are read with the engine's ModelConfig.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

from llamba.engine.config import ModelConfig
from llamba.engine.gguf_file import GGUFFile


class ExactModel:
    def __init__(self, path):
        self.config = ModelConfig.from_gguf(GGUFFile(path))
        self.tensors = {t.name: t for t in GGUFReader(path).tensors}
        self._weights: dict[str, np.ndarray] = {}

    def weight(self, name: str) -> np.ndarray | None:
        """The tensor as float64, numpy order ((rows, cols) for a matrix); None if absent."""
        if name not in self._weights:
            t = self.tensors.get(name)
            if t is None:
                return None
            shape = tuple(int(d) for d in reversed(t.shape))
            self._weights[name] = dequantize(t.data, t.tensor_type).astype(np.float64).reshape(shape)
        return self._weights[name]

    @cached_property
    def output(self) -> np.ndarray:
        out = self.weight("output.weight")
        return out if out is not None else self.weight("token_embd.weight")

    def rms(self, x: np.ndarray, name: str) -> np.ndarray:
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.config.rms_eps) * self.weight(name)

    def rope(self, x: np.ndarray, positions: np.ndarray, base: float) -> np.ndarray:
        """x (n, heads, head_dim) rotated by position; pairs (i, i + d/2), or adjacent pairs for
        `llama` files (whose Q and K rows llama.cpp's converter permuted)."""
        c = self.config
        d = c.rope_dim or c.head_dim
        angles = positions[:, None] * base ** (-np.arange(0, d, 2) / d)[None, :]
        cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
        out = x.copy()
        a, b = (x[..., :d // 2], x[..., d // 2:d]) if c.family.rope_halves else (x[..., 0:d:2], x[..., 1:d:2])
        first, second = a * cos - b * sin, a * sin + b * cos
        if c.family.rope_halves:
            out[..., :d // 2], out[..., d // 2:d] = first, second
        else:
            out[..., 0:d:2], out[..., 1:d:2] = first, second
        return out

    def logits(self, tokens: list[int], rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Logits (len(rows), vocab) of the given positions of a sequence starting at position 0."""
        c = self.config
        n, hd = len(tokens), c.head_dim
        positions = np.arange(n, dtype=np.float64)
        x = self.weight("token_embd.weight")[tokens]
        if c.family.scale_embeddings:
            x = x * np.sqrt(c.dim)
        for i in range(c.n_layers):
            def w(role: str) -> np.ndarray | None:
                return self.weight(f"blk.{i}.{role}")
            h = self.rms(x, f"blk.{i}.attn_norm.weight")
            if w("attn_qkv.weight") is not None:  # Phi-3's Q, K and V rows in one matrix
                q, k, v = np.split(h @ w("attn_qkv.weight").T, [c.q_dim, c.q_dim + c.kv_dim], axis=-1)
            else:
                q, k, v = (h @ w(f"attn_{p}.weight").T + (w(f"attn_{p}.bias") if w(f"attn_{p}.bias") is not None else 0)
                           for p in "qkv")
            q, k, v = q.reshape(n, c.n_heads, hd), k.reshape(n, c.n_kv_heads, hd), v.reshape(n, c.n_kv_heads, hd)
            if w("attn_q_norm.weight") is not None:
                q, k = self.rms(q, f"blk.{i}.attn_q_norm.weight"), self.rms(k, f"blk.{i}.attn_k_norm.weight")
            windowed = i in c.swa_layers
            base = c.rope_base_swa if windowed else c.rope_base
            q, k = self.rope(q, positions, base), self.rope(k, positions, base)
            k, v = np.repeat(k, c.n_rep, axis=1), np.repeat(v, c.n_rep, axis=1)
            scores = np.einsum("qhd,khd->hqk", q, k) * (c.query_scale or 1 / np.sqrt(hd))
            distance = positions[:, None] - positions[None, :]
            visible = (distance >= 0) & ((distance < c.sliding_window) if windowed else True)
            scores = np.where(visible[None], scores, -np.inf)
            weights = np.exp(scores - scores.max(-1, keepdims=True))
            weights /= weights.sum(-1, keepdims=True)
            out = np.einsum("hqk,khd->qhd", weights, v).reshape(n, c.q_dim) @ w("attn_output.weight").T
            if w("post_attention_norm.weight") is not None:
                out = self.rms(out, f"blk.{i}.post_attention_norm.weight")
            x = x + out
            h = self.rms(x, f"blk.{i}.ffn_norm.weight")
            if w("ffn_gate.weight") is not None:
                gate, up = h @ w("ffn_gate.weight").T, h @ w("ffn_up.weight").T
            else:  # Phi-3's gate and up rows in one matrix, the gate's first
                gate, up = np.split(h @ w("ffn_up.weight").T, 2, axis=-1)
            if c.family.gelu:  # the tanh approximation, as the models were trained
                act = 0.5 * gate * (1 + np.tanh(np.sqrt(2 / np.pi) * (gate + 0.044715 * gate ** 3)))
            else:
                act = gate / (1 + np.exp(-gate))
            out = (act * up) @ w("ffn_down.weight").T
            if w("post_ffw_norm.weight") is not None:
                out = self.rms(out, f"blk.{i}.post_ffw_norm.weight")
            x = x + out
        logits = self.rms(x[rows], "output_norm.weight") @ self.output.T
        if c.logit_softcap:
            logits = c.logit_softcap * np.tanh(logits / c.logit_softcap)
        return logits


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def step(logprobs: np.ndarray) -> dict:
    """A reference's greedy step: {id, logprob, top: [[id, logprob] x 5]}."""
    top = np.argsort(-logprobs, kind="stable")[:5]
    return dict(id=int(top[0]), logprob=float(logprobs[top[0]]), top=[[int(i), float(logprobs[i])] for i in top])


def greedy(model: ExactModel, prompt_ids: list[int], n: int) -> list[dict]:
    """n greedy steps (`step`), recomputing the sequence."""
    ids, steps = list(prompt_ids), []
    for _ in range(n):
        steps.append(step(log_softmax(model.logits(ids, slice(len(ids) - 1, len(ids)))[0])))
        ids.append(steps[-1]["id"])
    return steps


def perplexity(model: ExactModel, tokens: list[int], n_ctx: int, bos: int) -> tuple[float, int]:
    """llama-perplexity's protocol (engine/perplexity.py says it): (perplexity, chunks)."""
    n_chunks, first, nll, count = len(tokens) // n_ctx, n_ctx // 2, 0.0, 0
    for chunk in range(n_chunks):
        ids = [bos] + tokens[chunk * n_ctx + 1:(chunk + 1) * n_ctx]
        logprobs = log_softmax(model.logits(ids, slice(first, n_ctx - 1)))
        nll -= logprobs[np.arange(n_ctx - 1 - first), ids[first + 1:]].sum()
        count += n_ctx - 1 - first
    return float(np.exp(nll / count)), n_chunks
