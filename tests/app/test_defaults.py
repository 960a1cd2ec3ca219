"""What a user gets without asking: the README's own examples stop by themselves, every model
reports its context length and sampling defaults, the configuration can set them per model, and
a model given by path is served under its file's name."""
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx
import openai
import pytest

from llamba.engine.generate import generate
from tests.support.server import running_server
from tests.support import MODEL, MODELS_DIR, SMOLLM2, loaded, model_path

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
HI = [{"role": "user", "content": "Hi!"}]


@pytest.fixture(scope="module")
def server():
    with running_server("--parallel", "5") as base:  # the shipped configuration otherwise
        yield base


def test_readme_chat_examples_stop_by_themselves(server):
    """The SDK's question and both curl bodies, as the README sends them (no sampling fields but a
    seed, 0 to 4, so that a failure can be replayed), five times each: every answer ends with
    "stop" well before 300 tokens."""
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)

    def sdk(seed):
        r = client.chat.completions.create(model=MODEL, messages=QUESTION, seed=seed)
        return r.choices[0].finish_reason, r.usage.completion_tokens

    def curl(seed):
        r = httpx.post(f"{server}/v1/chat/completions", json={"model": MODEL, "messages": HI, "seed": seed},
                       timeout=300).json()
        return r["choices"][0]["finish_reason"], r["usage"]["completion_tokens"]

    def curl_stream(seed):
        body = {"model": MODEL, "stream": True, "messages": HI, "stream_options": {"include_usage": True},
                "seed": seed}
        finish, tokens = None, None
        with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, timeout=300) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    chunk = httpx.Response(200, content=line[6:]).json()
                    for choice in chunk["choices"]:
                        finish = choice["finish_reason"] or finish
                    tokens = (chunk.get("usage") or {}).get("completion_tokens", tokens)
        return finish, tokens

    with ThreadPoolExecutor(5) as pool:
        for example in (sdk, curl, curl_stream):
            results = list(pool.map(example, range(5)))
            assert all(finish == "stop" and tokens < 300 for finish, tokens in results), (example.__name__, results)


def test_models_report_context_length_and_sampling_defaults(server):
    card = httpx.get(f"{server}/v1/models/{MODEL}").json()
    assert card["meta"]["context_length"] == 4096
    assert card["meta"]["sampling_defaults"] == {"temperature": 0.2, "top_k": 40, "top_p": 0.9, "min_p": 0.05,
                                                 "repeat_penalty": 1.1, "max_tokens": 2048}


def test_configured_defaults_apply_to_what_a_request_leaves_out(tmp_path):
    config = tmp_path / "llamba.yaml"
    config.write_text(f"models:\n  - id: {MODEL}\n    aliases: [tiny]\n"
                      "    sampling: {temperature: 0, max_tokens: 4}\n")
    with running_server("--config", str(config)) as base:
        card = httpx.get(f"{base}/v1/models/tiny").json()
        assert card["meta"]["sampling_defaults"]["temperature"] == 0
        bodies = [httpx.post(f"{base}/v1/chat/completions", json={"model": m, "messages": QUESTION}, timeout=300).json()
                  for m in (MODEL, "tiny")]
    lm = loaded(SMOLLM2)  # temperature 0: the engine's greedy text, with the model's other defaults
    events = generate(lm.model, lm.tokenizer, lm.chat_prompt_ids(QUESTION),
                      replace(lm.sampling, temperature=0, max_tokens=4), lm.model.new_cache(512))
    greedy = "".join(e.text for e in events)
    assert [b["choices"][0]["message"]["content"] for b in bodies] == [greedy, greedy]
    assert [b["usage"]["completion_tokens"] for b in bodies] == [4, 4]
    assert [b["choices"][0]["finish_reason"] for b in bodies] == ["length", "length"]


def test_a_model_given_by_path_is_served_under_its_file_name():
    path = model_path("synth-llama3-small-q4_0")
    with running_server("--model", str(path)) as base:
        ids = [m["id"] for m in httpx.get(f"{base}/v1/models").json()["data"]]
    assert ids == [path.stem] and MODELS_DIR.name in str(path.parent)
