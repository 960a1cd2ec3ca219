"""A model's hyper-parameters, read from the `<architecture>.*` keys of its GGUF file, and what
each architecture (family) does differently from Llama's forward pass."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gguf_file import GGUFError, GGUFFile



@dataclass(frozen=True)
class Family:
    """What an architecture changes in the forward pass (model.py). Biases on Q, K and V (Qwen 2),
    RMSNorm on each head's queries and keys (Qwen 3, Gemma 3) and after attention and the MLP
    (Gemma 3) are read off the file's tensors."""
    # RoPE rotates (x[i], x[i + d/2]), as the original weights do; llama.cpp's converter permutes
    # Llama's Q and K weights so that adjacent pairs (x[2i], x[2i + 1]) rotate instead.
    rope_halves: bool = True
    gelu: bool = False              # the MLP's gate is GELU (tanh), not SiLU (Gemma)
    scale_embeddings: bool = False  # token embeddings times sqrt(dim) (Gemma)
    # every swa_pattern-th layer attends to the whole context, the others to a sliding window
    # (`<arch>.attention.sliding_window`), unless the file lists which (Gemma 3: 5 of every 6)
    swa_pattern: int = 0


FAMILIES = {"llama": Family(rope_halves=False), "qwen2": Family(), "qwen3": Family(), "phi3": Family(),
            "gemma3": Family(gelu=True, scale_embeddings=True, swa_pattern=6)}


@dataclass(frozen=True)
class ModelConfig:
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
    key_length: int | None = None  # dims per head where they are not dim / n_heads (Qwen 3)
    arch: str = "llama"
    sliding_window: int = 0  # positions a sliding-window layer sees, its own included
    swa_layers: tuple[int, ...] = ()  # the layers that see only that window
    rope_base_swa: float = 10000.0    # RoPE's base in those layers
    query_scale: float | None = None  # of the attention scores; None: 1 / sqrt(head_dim)
    logit_softcap: float = 0.0        # logits = cap * tanh(logits / cap) where set

    @property
    def family(self) -> Family:
        return FAMILIES[self.arch]

    @property
    def head_dim(self) -> int:
        return self.key_length or self.dim // self.n_heads

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

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
    def from_gguf(cls, f: GGUFFile) -> "ModelConfig":
        meta = f.metadata
        arch = meta.get("general.architecture")
        if arch is None:
            raise GGUFError(f"{f.path}: missing metadata key 'general.architecture'")
        if arch not in FAMILIES:
            raise GGUFError(f"{f.path}: unsupported architecture {arch!r} (supported: {', '.join(FAMILIES)})")

        def count(key: str, default=None) -> int:
            """A positive integer (a size or a count) of the <arch>.* metadata."""
            value = meta.get(f"{arch}.{key}", default)
            if value is None:
                raise GGUFError(f"{f.path}: missing metadata key '{arch}.{key}'")
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 < value < 2**31:
                raise GGUFError(f"{f.path}: metadata key '{arch}.{key}' must be a positive integer, got {value!r}")
            return int(value)

        def real(key: str, default: float) -> float:
            value = meta.get(f"{arch}.{key}", default)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value < 1e30:
                raise GGUFError(f"{f.path}: metadata key '{arch}.{key}' must be a positive number, got {value!r}")
            return float(value)

        scaling = meta.get(f"{arch}.rope.scaling.type", "none")  # (Llama 3.1's is the rope_freqs tensor)
        if scaling != "none" and meta.get(f"{arch}.rope.scaling.factor", 1.0) != 1.0:
            raise GGUFError(f"{f.path}: unsupported RoPE scaling {scaling!r} ({arch}.rope.scaling.type)")

        tokens = meta.get("tokenizer.ggml.tokens")
        n_heads, n_layers = count("attention.head_count"), count("block_count")
        config = cls(
            dim=count("embedding_length"),
            n_layers=n_layers,
            n_heads=n_heads,
            n_kv_heads=count("attention.head_count_kv", n_heads),
            ffn_dim=count("feed_forward_length"),
            vocab_size=count("vocab_size", len(tokens) if tokens is not None else None),
            context_length=count("context_length"),
            rope_base=real("rope.freq_base", 10000.0),
            rms_eps=real("attention.layer_norm_rms_epsilon", 1e-5),
            rope_dim=count("rope.dimension_count") if f"{arch}.rope.dimension_count" in meta else None,
            key_length=count("attention.key_length") if f"{arch}.attention.key_length" in meta else None,
            arch=arch,
            **sliding_window(f, arch, n_layers),
            logit_softcap=real("final_logit_softcapping", 0.0) if f"{arch}.final_logit_softcapping" in meta else 0.0,
            # Gemma 3 27B scales queries by its width per head, not its head size (gemma_pytorch's
            # query_pre_attn_scalar; llama.cpp tells it by its 62 layers)
            query_scale=(n_heads / count("embedding_length")) ** 0.5
            if arch == "gemma3" and n_layers == 62 else None,
        )
        if meta.get(f"{arch}.attention.value_length", config.head_dim) != config.head_dim:
            raise GGUFError(f"{f.path}: {arch}.attention.value_length differs from the key length {config.head_dim}")
        if (config.key_length is None and config.dim % n_heads) or n_heads % config.n_kv_heads:
            raise GGUFError(f"{f.path}: head counts ({n_heads} heads, {config.n_kv_heads} KV heads) "
                            f"do not divide embedding_length {config.dim}")
        if config.head_dim % 16:  # attention works on 16-lane vectors (ops.attention)
            raise GGUFError(f"{f.path}: head size {config.head_dim} (embedding_length / head_count) is not "
                            f"a multiple of 16, which the attention kernel needs")
        rotated = config.rope_dim or config.head_dim
        if rotated % 2 or rotated > config.head_dim:
            raise GGUFError(f"{f.path}: {arch}.rope.dimension_count {rotated} must be even and at most the "
                            f"head size {config.head_dim}")
        return config


def sliding_window(f: GGUFFile, arch: str, n_layers: int) -> dict:
    """The sliding-window fields of a ModelConfig: the window, its layers (as llama.cpp reads
    them: a list of flags per layer, or every n-th layer full and the others windowed) and their
    RoPE base."""
    meta = f.metadata
    window = meta.get(f"{arch}.attention.sliding_window", 0)
    if not window:
        return {}
    pattern = meta.get(f"{arch}.attention.sliding_window_pattern", FAMILIES[arch].swa_pattern)
    if isinstance(pattern, (list, tuple, np.ndarray)):
        if len(pattern) != n_layers:
            raise GGUFError(f"{f.path}: {arch}.attention.sliding_window_pattern has {len(pattern)} entries "
                            f"for {n_layers} layers")
        layers = tuple(i for i, windowed in enumerate(pattern) if windowed)
    else:
        layers = tuple(i for i in range(n_layers) if pattern == 0 or i % pattern < pattern - 1)
    return dict(sliding_window=int(window), swa_layers=layers,
                rope_base_swa=float(meta.get(f"{arch}.rope.freq_base_swa", 10000.0)))
