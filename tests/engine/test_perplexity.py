"""`llamba perplexity` on the reference text against the exact reference (within 0.1%): the
engine keeps activations to 16 bits, so it follows the exact computation, not llama.cpp's 8-bit
one. The command runs in this process (its output read from stdout)."""
import re

import pytest

from llamba.app.cli import main
from support import ALL_MODELS, GPL_TEXT, exact_activations, model_path, reference


@exact_activations
@pytest.mark.parametrize("name", ALL_MODELS)
def test_perplexity_command_matches_exact_reference(name, capsys):
    if not GPL_TEXT.exists():
        pytest.skip(f"{GPL_TEXT} is absent")
    ref = reference(name, exact=True)["perplexity"]
    status = main(["perplexity", "--model", str(model_path(name)), "--file", str(GPL_TEXT),
                   "--ctx", str(ref["n_ctx"])])
    out = capsys.readouterr().out
    assert status == 0
    assert re.search(r"^chunks = (\d+)", out, re.M).group(1) == str(ref["chunks"])
    ppl = float(re.search(r"^PPL = ([0-9.]+)$", out, re.M).group(1))
    assert abs(ppl / ref["ppl"] - 1) < 1e-3, (ppl, ref["ppl"])
    llama_cpp = reference(name)["perplexity"]["ppl"]
    assert abs(ppl / llama_cpp - 1) < 1e-2  # and llama.cpp's own figure is near too
