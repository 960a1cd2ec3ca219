"""Embeddings against llama.cpp's: the same texts through llamba's `/v1/embeddings` and through
llama-server's (`--embeddings --pooling mean`, built from the llama.cpp source llama-cpp-python
vendors, bench/llama_server.py), both normalized as their OpenAI routes give them, and the cosine
of each pair.

    python -m bench.embeddings [--model PATH]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np

from llamba.engine.loader import default_model_path
from tests.support.server import free_port, wait_until_healthy

from .concurrency import below_avx512
from .llama_server import llama_server_binary

TEXTS = ["The cat sat on the mat.", "Quarterly revenue rose 12% on strong cloud demand.",
         "def add(a, b):\n    return a + b", "Der schnelle braune Fuchs springt über den faulen Hund.",
         "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen in the chloroplasts of "
         "plant cells, releasing oxygen as a by-product."]


def server_vectors(cmd: list[str], port: int, texts: list[str]) -> np.ndarray:
    """Start a server, wait for /health, embed `texts` through its /v1/embeddings, stop it."""
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        proc.log, base = log, f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(base, proc, patience=300)
            model = httpx.get(f"{base}/v1/models", timeout=10).json()["data"][0]["id"]
            r = httpx.post(f"{base}/v1/embeddings", json={"model": model, "input": texts}, timeout=300)
            r.raise_for_status()
            data = sorted(r.json()["data"], key=lambda d: d["index"])
            return np.array([d["embedding"] for d in data], dtype=np.float64)
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None)
    args = p.parse_args()
    path = str(args.model or default_model_path())
    port = free_port()
    ours = server_vectors([sys.executable, "-m", "llamba", "serve", "--model", path, "--port", str(port)],
                          port, TEXTS)
    port = free_port()
    theirs = server_vectors([str(llama_server_binary(avx2_only=below_avx512("auto"))), "-m", path, "--port",
                             str(port), "--embeddings", "--pooling", "mean", "-c", "2048"], port, TEXTS)
    cosines = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    for text, cosine in zip(TEXTS, cosines):
        print(f"{cosine:.5f}  {text[:60]!r}")
    print(f"min cosine {cosines.min():.5f} over {len(TEXTS)} texts (mean pooling, normalized), "
          f"llamba against llama-server --embeddings --pooling mean")


if __name__ == "__main__":
    main()
