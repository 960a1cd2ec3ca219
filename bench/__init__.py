"""Benchmarks: llamba beside llama.cpp on the same machine, in one run (see README, Performance)."""
from __future__ import annotations

import json
from pathlib import Path


def write_results(folder: Path, stem: str, machine: dict, results: dict) -> Path:
    """folder/<stem>.json: the machine a run measured on (CPU, builds, threads) and its figures."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(dict(machine=machine, results=results), indent=1))
    print(f"wrote {path}")
    return path
