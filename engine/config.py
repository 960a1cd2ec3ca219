"""Hyper-parameters of a Llama model, read from the `llama.*` keys of a GGUF file."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gguf_file import GGUFError, GGUFFile

SUPPORTED_ARCHITECTURES = ("llama",)


@dataclass(frozen=True)
class LlamaConfig:
    dim: int             # embedding width
    n_layers: int
    n_heads: int         # query heads
    n_kv_heads: int      # key/value heads (grouped-query attention when fewer than n_heads)
    ffn_dim: int         # hidden width of the SwiGLU feed-forward
    vocab_size: int
    context_length: int  # what the model was trained for; the KV cache may be smaller
    rope_base: float = 10000.0
    rms_eps: float = 1e-5
    rope_dim: int | None = None  # rotated dims per head; None means the whole head

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    def context(self, requested: int) -> int:
        """Positions a KV cache holds when `requested` are asked for: never more than the model's own."""
        return min(requested, self.context_length)

    @property
    def n_rep(self) -> int:
        """How many query heads share one key/value head."""
        return self.n_heads // self.n_kv_heads

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> "LlamaConfig":
        meta = f.metadata
        arch = meta.get("general.architecture")
        if arch is None:
            raise GGUFError(f"{f.path}: missing metadata key 'general.architecture'")
        if arch not in SUPPORTED_ARCHITECTURES:
            raise GGUFError(f"{f.path}: unsupported architecture {arch!r} (supported: llama)")

        def count(key: str, default=None) -> int:
            """A positive integer (a size or a count) of the llama.* metadata."""
            value = meta.get(f"llama.{key}", default)
            if value is None:
                raise GGUFError(f"{f.path}: missing metadata key 'llama.{key}'")
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 < value < 2**31:
                raise GGUFError(f"{f.path}: metadata key 'llama.{key}' must be a positive integer, got {value!r}")
            return int(value)

        def real(key: str, default: float) -> float:
            value = meta.get(f"llama.{key}", default)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value < 1e30:
                raise GGUFError(f"{f.path}: metadata key 'llama.{key}' must be a positive number, got {value!r}")
            return float(value)

        tokens = meta.get("tokenizer.ggml.tokens")
        n_heads = count("attention.head_count")
        config = cls(
            dim=count("embedding_length"),
            n_layers=count("block_count"),
            n_heads=n_heads,
            n_kv_heads=count("attention.head_count_kv", n_heads),
            ffn_dim=count("feed_forward_length"),
            vocab_size=count("vocab_size", len(tokens) if tokens is not None else None),
            context_length=count("context_length"),
            rope_base=real("rope.freq_base", 10000.0),
            rms_eps=real("attention.layer_norm_rms_epsilon", 1e-5),
            rope_dim=count("rope.dimension_count") if "llama.rope.dimension_count" in meta else None,
        )
        if config.dim % n_heads or n_heads % config.n_kv_heads:
            raise GGUFError(f"{f.path}: head counts ({n_heads} heads, {config.n_kv_heads} KV heads) "
                            f"do not divide embedding_length {config.dim}")
        if config.head_dim % 16:  # attention works on 16-lane vectors (ops.attention)
            raise GGUFError(f"{f.path}: head size {config.head_dim} (embedding_length / head_count) is not "
                            f"a multiple of 16, which the attention kernel needs")
        rotated = config.rope_dim or config.head_dim
        if rotated % 2 or rotated > config.head_dim:
            raise GGUFError(f"{f.path}: llama.rope.dimension_count {rotated} must be even and at most the "
                            f"head size {config.head_dim}")
        return config
