"""The real Gemma 3 270M served: `llamba serve --model gemma-3-270m-q4_k_m.gguf` answers chat
completions (whole and streamed), completions, the Responses API and the Messages API, each read
by its own SDK, with the greedy answer the engine gives in-process (test_gemma3.py checks that
one against llama.cpp and the exact computation); a prompt longer than the sliding window, which
the server prefills in steps while its windowed layers give back what leaves the window, gets the
answer the model computes in one piece with every position kept."""
import anthropic
import openai
import pytest

from llamba.engine.chat.template import ChatTemplate
from tests.support import _load, reference
from tests.support.gemma3 import NAME, gemma3_path
from tests.support.server import llamba_server

pytestmark = pytest.mark.slow
ASK = [{"role": "user", "content": "What is the capital of France?"}]
MODEL = "gemma-3-270m-q4_k_m"


@pytest.fixture(scope="module")
def base():
    with llamba_server(["--model", str(gemma3_path()), "--ctx", "1024"], patience=240) as (url, _):
        yield url


def test_chat_whole_and_streamed_agree_with_the_prompt_completed(base):
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused")
    whole = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=12, temperature=0)
    assert whole.choices[0].message.content and whole.usage.completion_tokens == 12
    stream = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=12, temperature=0, stream=True)
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert len([p for p in pieces if p]) > 1 and "".join(pieces) == whole.choices[0].message.content
    # the same tokens from the completions endpoint given the rendered prompt (ChatML: the file has no template)
    prompt = ChatTemplate(None).render(ASK)
    completion = client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=0)
    assert completion.choices[0].text == whole.choices[0].message.content


def test_responses_and_messages_answer_alike(base):
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused")
    chat = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=8, temperature=0)
    response = client.responses.create(model=MODEL, input=ASK[0]["content"], max_output_tokens=8, temperature=0)
    assert response.output_text == chat.choices[0].message.content
    message = anthropic.Anthropic(base_url=base, api_key="unused").messages.create(
        model=MODEL, max_tokens=8, messages=ASK, extra_body={"temperature": 0})
    assert message.content[0].text == chat.choices[0].message.content and message.stop_reason == "max_tokens"


def test_a_prompt_longer_than_the_window_gets_the_answer_computed_in_one_piece(base):
    prompt = reference(NAME)["text_ids"][:700]  # 700 tokens: three steps of the server's 256, window 512
    model, tok = (lm := _load(gemma3_path())).model, lm.tokenizer
    cache, ids = model.new_cache(1024), []
    logits = model.forward(prompt, 0, cache)
    for k in range(8):
        ids.append(int(logits.argmax()))
        logits = model.forward([ids[-1]], len(prompt) + k, cache)
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused")
    answer = client.completions.create(model=MODEL, prompt=prompt, max_tokens=8, temperature=0)
    assert answer.choices[0].text == tok.decode(ids) and answer.usage.completion_tokens == 8
