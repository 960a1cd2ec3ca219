"""Hyper-parameters of a Llama model, read from the `llama.*` keys of a GGUF file."""
from __future__ import annotations

from dataclasses import dataclass

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

        def need(key: str):
            if f"llama.{key}" not in meta:
                raise GGUFError(f"{f.path}: missing metadata key 'llama.{key}'")
            return meta[f"llama.{key}"]

        n_heads = int(need("attention.head_count"))
        tokens = meta.get("tokenizer.ggml.tokens")
        vocab = meta.get("llama.vocab_size", len(tokens) if tokens is not None else None)
        if vocab is None:
            raise GGUFError(f"{f.path}: missing metadata key 'llama.vocab_size'")
        config = cls(
            dim=int(need("embedding_length")),
            n_layers=int(need("block_count")),
            n_heads=n_heads,
            n_kv_heads=int(meta.get("llama.attention.head_count_kv", n_heads)),
            ffn_dim=int(need("feed_forward_length")),
            vocab_size=int(vocab),
            context_length=int(need("context_length")),
            rope_base=float(meta.get("llama.rope.freq_base", 10000.0)),
            rms_eps=float(meta.get("llama.attention.layer_norm_rms_epsilon", 1e-5)),
            rope_dim=int(meta["llama.rope.dimension_count"]) if "llama.rope.dimension_count" in meta else None,
        )
        if config.dim % n_heads or n_heads % config.n_kv_heads:
            raise GGUFError(f"{f.path}: head counts ({n_heads} heads, {config.n_kv_heads} KV heads) "
                            f"do not divide embedding_length {config.dim}")
        return config
