"""Small synthetic models of other families, written here from a seed: the family's real
vocabulary (tests/data/vocab, from llama.cpp) and chat template (tests/data/templates), random
float32 weights. The references in tests/data/<name>.json were made by llama.cpp on the same
files (`python -m tests.support.families NAME`, with llama-cpp-python installed); each records
its file's sha256, which the file written here must have.

    python -m tests.support.families synth-qwen2-f32   # writes the reference JSON
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFWriter

from llamba.engine.gguf_file import GGUFFile

from .fixtures import ROOT

DATA = ROOT / "tests" / "data"
CACHE = Path(os.environ.get("LLAMBA_CACHE", Path.home() / ".cache" / "llamba")) / "families"

# name -> architecture, vocabulary, template, and what differs in its shape
FAMILY_MODELS = {
    "synth-qwen2-f32": dict(arch="qwen2", vocab="qwen2", template="Qwen-Qwen2.5-7B-Instruct.jinja", eos="<|im_end|>",
                            biases=True),
    "synth-qwen3-f32": dict(arch="qwen3", vocab="qwen2", template="Qwen-Qwen3-0.6B.jinja", eos="<|im_end|>",
                            qk_norm=True, key_length=48),
    "synth-phi3-f32": dict(arch="phi3", vocab="phi-3", template="microsoft-Phi-3.5-mini-instruct.jinja", eos="<|end|>",
                           fused=True),
    # a Llama with a SentencePiece vocabulary: Llama 2, Mistral 7B, TinyLlama
    "synth-llama-spm-f32": dict(arch="llama", vocab="llama-spm", template="mistralai-Mistral-Nemo-Instruct-2407.jinja",
                                eos="</s>"),
}
SHAPE = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn=128, context=4096, rope_base=1e6, eps=1e-6)
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a land far away,",
           "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n", "Ein kleiner Test auf Deutsch:",
           "日本語のテキストです。", "🦙 llamas and 🐪 camels", "1, 2, 3, 4, 5,"]
TOKENIZE = PROMPTS + ["", " ", "   leading spaces", "tabs\tand\nnewlines\r\n", "<|im_start|> as text",
                      "Hello, World! 12345678 ünï", "    def f(x):\n        return x ** 2\n"]


def write(name: str, path: Path) -> None:
    spec, s = FAMILY_MODELS[name], SHAPE
    rng = np.random.default_rng(int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))
    arch, head_dim = spec["arch"], spec.get("key_length", s["dim"] // s["n_heads"])
    q_dim, kv_dim = s["n_heads"] * head_dim, s["n_kv_heads"] * head_dim
    vocab = GGUFFile(DATA / "vocab" / f"ggml-vocab-{spec['vocab']}.gguf").metadata
    n_vocab = len(vocab["tokenizer.ggml.tokens"])
    w = GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_context_length(s["context"])
    w.add_embedding_length(s["dim"])
    w.add_block_count(s["n_layers"])
    w.add_feed_forward_length(s["ffn"])
    w.add_head_count(s["n_heads"])
    w.add_head_count_kv(s["n_kv_heads"])
    if "key_length" in spec:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_rope_freq_base(s["rope_base"])
    w.add_layer_norm_rms_eps(s["eps"])
    w.add_file_type(0)
    for key in ("model", "pre"):
        w.add_string(f"tokenizer.ggml.{key}", vocab[f"tokenizer.ggml.{key}"])
    w.add_token_list(vocab["tokenizer.ggml.tokens"].as_bytes())
    w.add_token_types(vocab["tokenizer.ggml.token_type"].tolist())
    if "tokenizer.ggml.merges" in vocab:
        w.add_token_merges(vocab["tokenizer.ggml.merges"].as_bytes())
    if "tokenizer.ggml.scores" in vocab:
        w.add_token_scores(vocab["tokenizer.ggml.scores"].tolist())
    tokens = vocab["tokenizer.ggml.tokens"].as_str()
    w.add_eos_token_id(tokens.index(spec["eos"]))
    w.add_bos_token_id(vocab["tokenizer.ggml.bos_token_id"])
    w.add_add_bos_token(bool(vocab.get("tokenizer.ggml.add_bos_token", False)))
    w.add_chat_template((DATA / "templates" / spec["template"]).read_text())

    def tensor(name: str, *shape: int, scale: float = 0.0) -> None:
        """Normal weights of standard deviation 1/sqrt(fan-in), or norms near 1 (scale > 0)."""
        if scale:
            w.add_tensor(name, (1 + scale * rng.standard_normal(shape)).astype(np.float32))
        else:
            w.add_tensor(name, (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32))

    tensor("token_embd.weight", n_vocab, s["dim"])
    tensor("output_norm.weight", s["dim"], scale=0.1)
    for i in range(s["n_layers"]):
        tensor(f"blk.{i}.attn_norm.weight", s["dim"], scale=0.1)
        tensor(f"blk.{i}.ffn_norm.weight", s["dim"], scale=0.1)
        if spec.get("fused"):  # Phi-3: Q, K, V in one tensor, and gate and up
            tensor(f"blk.{i}.attn_qkv.weight", q_dim + 2 * kv_dim, s["dim"])
        else:
            tensor(f"blk.{i}.attn_q.weight", q_dim, s["dim"])
            tensor(f"blk.{i}.attn_k.weight", kv_dim, s["dim"])
            tensor(f"blk.{i}.attn_v.weight", kv_dim, s["dim"])
        if spec.get("biases"):
            for part, size in (("q", q_dim), ("k", kv_dim), ("v", kv_dim)):
                w.add_tensor(f"blk.{i}.attn_{part}.bias", (0.5 * rng.standard_normal(size)).astype(np.float32))
        if spec.get("qk_norm"):
            tensor(f"blk.{i}.attn_q_norm.weight", head_dim, scale=0.1)
            tensor(f"blk.{i}.attn_k_norm.weight", head_dim, scale=0.1)
        tensor(f"blk.{i}.attn_output.weight", s["dim"], q_dim)
        if spec.get("fused"):
            tensor(f"blk.{i}.ffn_up.weight", 2 * s["ffn"], s["dim"])
        else:
            tensor(f"blk.{i}.ffn_gate.weight", s["ffn"], s["dim"])
            tensor(f"blk.{i}.ffn_up.weight", s["ffn"], s["dim"])
        tensor(f"blk.{i}.ffn_down.weight", s["dim"], s["ffn"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def family_model(name: str) -> Path:
    """The model file, written on first use (cached in $LLAMBA_CACHE/families)."""
    path = CACHE / f"{name}.gguf"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        write(name, partial)
        partial.rename(path)
    return path


def make_reference(name: str) -> dict:
    """llama.cpp (llama-cpp-python) on the file: its tokenization of TOKENIZE, and for each of
    PROMPTS 40 greedy steps with the top 5 logprobs of its raw logits (KV cache in float32, so
    that a float32 model's numbers are llama.cpp's float32 arithmetic alone)."""
    import llama_cpp
    from llama_cpp import Llama

    path = family_model(name)
    llm = Llama(str(path), n_ctx=256, n_batch=256, logits_all=True, verbose=False, seed=0, n_threads=2,
                type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    tokenize = [dict(text=t, ids=llm.tokenize(t.encode(), add_bos=False, special=False)) for t in TOKENIZE]
    greedy = []
    for prompt in PROMPTS:
        ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)
        llm.reset()
        llm.eval(ids)
        steps, out = [], []
        for _ in range(40):
            logits = np.asarray(llm.eval_logits[-1], np.float64)
            logprobs = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
            top = np.argsort(-logprobs, kind="stable")[:5]
            steps.append(dict(id=int(top[0]), logprob=float(logprobs[top[0]]),
                              top=[[int(i), float(logprobs[i])] for i in top]))
            out.append(int(top[0]))
            llm.eval([int(top[0])])
        greedy.append(dict(prompt=prompt, prompt_ids=ids, output_ids=out, steps=steps))
    return dict(file_sha256=sha256(path), llama_cpp_python=llama_cpp.__version__, tokenize=tokenize, greedy=greedy)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        (DATA / f"{name}.json").write_text(json.dumps(make_reference(name), ensure_ascii=False, indent=1) + "\n")
        print(f"wrote tests/data/{name}.json")
