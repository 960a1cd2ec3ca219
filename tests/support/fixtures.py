"""The files the tests need from ../shared (or $LLAMBA_SHARED), checked with the standard library
alone, so that `.ci/run` can name what is missing before it installs anything:
`python tests/support/fixtures.py` prints each missing file and exits 1."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("LLAMBA_SHARED", ROOT.parent / "shared"))
MODELS_DIR = SHARED / "models"
GPL_TEXT = SHARED / "texts" / "GPL-2.txt"
SYNTH = ["synth-llama3-tiny-f32", "synth-llama3-small-q4_0", "synth-llama3-small-q8_0",
         "synth-llama3-small-q4_k_m"]
NEEDED = [*(MODELS_DIR / f"{name}.gguf" for name in SYNTH), GPL_TEXT]


def missing_files() -> list[Path]:
    return [path for path in NEEDED if not path.is_file()]


if __name__ == "__main__":
    absent = missing_files()
    for path in absent:
        print(f"missing test fixture: {path}", file=sys.stderr)
    sys.exit(1 if absent else 0)
