"""`llamba perplexity` on the reference text against the exact reference (within 0.1%): the
engine keeps activations in float, so it follows the exact computation, not llama.cpp's."""
import re
import subprocess
import sys

import pytest

from support import ALL_MODELS, GPL_TEXT, model_path, reference


@pytest.mark.parametrize("name", ALL_MODELS)
def test_perplexity_cli_matches_exact_reference(name):
    if not GPL_TEXT.exists():
        pytest.skip(f"{GPL_TEXT} is absent")
    ref = reference(name, exact=True)["perplexity"]
    out = subprocess.run([sys.executable, "-m", "engine.cli", "perplexity", "--model", str(model_path(name)),
                          "--file", str(GPL_TEXT), "--ctx", str(ref["n_ctx"])],
                         capture_output=True, text=True, timeout=900, check=True).stdout
    ppl = float(re.search(r"^PPL = ([0-9.]+)$", out, re.M).group(1))
    assert f"chunks = {ref['chunks']}" in out
    assert abs(ppl / ref["ppl"] - 1) < 1e-3, (ppl, ref["ppl"])
    llama_cpp = reference(name)["perplexity"]["ppl"]
    assert abs(ppl / llama_cpp - 1) < 1e-2  # and llama.cpp's own figure is near too
