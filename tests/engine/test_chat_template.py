"""Chat prompts against llama.cpp's rendering of each model's own template."""
from datetime import datetime

import pytest

from tests.support import ALL_MODELS, loaded, reference
from llamba.engine.chat.template import ChatTemplate, TemplateError

REFERENCE_DAY = datetime(2026, 11, 25)  # the Llama 3.2 template prints the date it was rendered


@pytest.mark.parametrize("name", ALL_MODELS)
def test_chat_template_matches_llama_cpp(name):
    template = loaded(name).template
    for case in reference(name)["chat_template"]:
        assert template.render(case["messages"], add_generation_prompt=True, now=REFERENCE_DAY) == case["prompt"]


def test_llama32_template_prints_the_date_passed_in():
    template = loaded("synth-llama3-small-q4_0").template
    prompt = template.render([{"role": "user", "content": "Hi"}], now=datetime(2030, 1, 2))
    assert "Today Date: 02 Jan 2030" in prompt


def test_template_runs_sandboxed():
    evil = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(TemplateError):
        ChatTemplate(evil).render([{"role": "user", "content": "x"}])


def test_template_can_raise_exception():
    template = ChatTemplate("{{ raise_exception('roles must alternate') }}")
    with pytest.raises(TemplateError, match="roles must alternate"):
        template.render([{"role": "user", "content": "x"}])


def test_fallback_is_chatml_as_llama_cpp():
    template = ChatTemplate(None, bos_token="<bos>")
    prompt = template.render([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert prompt == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
