"""The README's examples for each API, run as written against a real `llamba serve` on the
default model (the server of tests/app/conftest.py), its address and API key put in."""
import re

import pytest

from tests.support import ROOT
from tests.support.server import API_KEY

SECTIONS = ["### The Responses API", "### An agent", "### Anthropic's Messages API", "### Embeddings"]


def python_block(heading: str) -> str:
    section = (ROOT / "README.md").read_text().split(heading + "\n")[1].split("\n### ")[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize("heading", SECTIONS)
def test_the_readmes_example_runs(server, heading):
    code = python_block(heading).replace("http://localhost:8000", server).replace('api_key="unused"',
                                                                                f'api_key="{API_KEY}"')
    printed = []
    exec(code, {"print": lambda *args, **_: printed.append(" ".join(map(str, args)))})
    assert "".join(printed).strip(), f"the {heading} example printed nothing"
