"""Embeddings against llama.cpp's: the same texts through llamba's `/v1/embeddings` pooling and
through llama.cpp (llama-cpp-python's `Llama(embedding=True)`, mean pooling, normalized, the code
llama-server's `--embeddings --pooling mean` runs), and the cosine of each pair.

    python -m bench.embeddings [--model PATH]
"""
from __future__ import annotations

import argparse
import asyncio

import numpy as np

from llamba.engine.loader import LoadedModel, default_model_path
from llamba.engine.scheduler import ModelRunner

TEXTS = ["The cat sat on the mat.", "Quarterly revenue rose 12% on strong cloud demand.",
         "def add(a, b):\n    return a + b", "Der schnelle braune Fuchs springt über den faulen Hund.",
         "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen in the chloroplasts of "
         "plant cells, releasing oxygen as a by-product."]


def llamba_vectors(path, texts: list[str]) -> np.ndarray:
    loaded = LoadedModel.load(path)

    async def go():
        runner = ModelRunner(loaded, 2048, parallel=len(texts))
        job = runner.submit_embeddings([loaded.tokenizer.encode(t, add_special=True) for t in texts], "mean")
        events = [e async for e in runner.stream(job)]
        runner.close()
        return np.stack([e.vector for e in sorted(events, key=lambda e: e.index)])
    return asyncio.run(go())


def llama_cpp_vectors(path, texts: list[str]) -> np.ndarray:
    import llama_cpp
    llm = llama_cpp.Llama(str(path), embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN, n_ctx=2048,
                          verbose=False)
    return np.stack([np.asarray(llm.embed(t, normalize=True), dtype=np.float64) for t in texts])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    args = p.parse_args()
    path = args.model or default_model_path()
    ours, theirs = llamba_vectors(path, TEXTS), llama_cpp_vectors(path, TEXTS)
    cosines = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    for text, cosine in zip(TEXTS, cosines):
        print(f"{cosine:.5f}  {text[:60]!r}")
    print(f"min cosine {cosines.min():.5f} over {len(TEXTS)} texts (mean pooling, normalized)")


if __name__ == "__main__":
    main()
