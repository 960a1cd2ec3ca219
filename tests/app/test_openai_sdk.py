"""The official openai SDK, unmodified, against a real server."""
from dataclasses import replace

import httpx
import openai
import pytest

from tests.support.edits import EDITS
from tests.support import MODEL, SMOLLM2, loaded
from tests.support.server import metrics
from llamba.engine.generate import generate

# SmolLM2 answers this one in a sentence at either activation width (its first token for France's
# capital is a near tie, "L" or "The", which the 8-bit rounding tips towards a long answer in French)
QUESTION = [{"role": "user", "content": "What is the capital of Japan?"}]


def test_chat_completion(client):
    r = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=24, temperature=0)
    assert "Tokyo" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 10 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_greedy_chat_equals_engine_greedy(client):
    lm = loaded(SMOLLM2)
    ids = lm.chat_prompt_ids(QUESTION)
    events = list(generate(lm.model, lm.tokenizer, ids, replace(lm.sampling, temperature=0, max_tokens=24),
                           lm.model.new_cache(512)))
    r = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=24, temperature=0)
    assert r.choices[0].message.content == "".join(e.text for e in events)
    assert r.usage.completion_tokens == len(events)


def test_edit_is_drafted_from_its_prompt_and_the_answer_is_the_engines_without_drafts(client, server):
    """Speculation, on by default: an edit of a given text gets the greedy answer `generate`
    gives one token at a time; usage and /metrics count the drafts."""
    lm, edit = loaded(SMOLLM2), [{"role": "user", "content": EDITS[1]}]
    events = list(generate(lm.model, lm.tokenizer, lm.chat_prompt_ids(edit),
                           replace(lm.sampling, temperature=0, max_tokens=64), lm.model.new_cache(512)))
    before = metrics(server)
    r = client.chat.completions.create(model=MODEL, messages=edit, max_tokens=64, temperature=0)
    after = metrics(server)
    assert r.choices[0].message.content == "".join(e.text for e in events)
    details = r.usage.completion_tokens_details
    assert details.accepted_prediction_tokens > 16
    drafted = details.accepted_prediction_tokens + details.rejected_prediction_tokens
    assert after["llamba_draft_tokens_total"] - before["llamba_draft_tokens_total"] == drafted
    assert (after["vllm:spec_decode_num_accepted_tokens_total"] - before["vllm:spec_decode_num_accepted_tokens_total"]
            == details.accepted_prediction_tokens)


def test_streaming_chat_with_usage(client):
    stream = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=24, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content_chunks = [c for c in chunks if c.choices]
    assert content_chunks[-1].choices[0].finish_reason == "stop"
    assert "Tokyo" in "".join(c.choices[0].delta.content or "" for c in content_chunks)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(content_chunks) - 1


def test_completion_with_token_id_prompt(client):
    ids = loaded(SMOLLM2).tokenizer.encode("The capital of France is")
    r = client.completions.create(model=MODEL, prompt=ids, max_tokens=4, temperature=0)
    assert "Paris" in r.choices[0].text
    assert r.usage.prompt_tokens == len(ids)


def test_models_list(client):
    assert [m.id for m in client.models.list()] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL


def test_same_seed_same_text(client):
    kw = dict(model=MODEL, messages=[{"role": "user", "content": "Tell me a story."}], max_tokens=16,
              temperature=0.9, seed=1234)
    a = client.chat.completions.create(**kw).choices[0].message.content
    b = client.chat.completions.create(**kw).choices[0].message.content
    c = client.chat.completions.create(**{**kw, "seed": 99}).choices[0].message.content
    assert a == b and a != c


def test_stop_string_ends_text_before_it(client):
    full = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=24, temperature=0)
    text = full.choices[0].message.content
    r = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=24, temperature=0, stop=["Tokyo"])
    assert r.choices[0].message.content == text[:text.index("Tokyo")]
    assert r.choices[0].finish_reason == "stop"


def test_logprobs_and_token_ids(client):
    r = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4, temperature=0,
                                       logprobs=True, top_logprobs=3,
                                       extra_body={"return_tokens_as_token_ids": True})
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert all(t.token.startswith("token_id:") and len(t.top_logprobs) == 3 for t in content)
    assert content[0].logprob == pytest.approx(content[0].top_logprobs[0].logprob)


def test_error_classes(client, server):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=QUESTION)
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=7)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=100000)
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=QUESTION, n=2)
    assert e.value.body["param"] == "n"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0).models.list()


@pytest.mark.parametrize("body, status, param", [
    (b"{not json", 400, None),
    (b'{"model": "smollm2-135m-instruct"}', 400, "messages"),
    (b'{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "x"}], "top_p": "high"}', 400, "top_p"),
])
def test_malformed_bodies_get_openai_errors(server, body, status, param):
    r = httpx.post(f"{server}/v1/chat/completions", content=body,
                   headers={"Authorization": "Bearer sk-test-llamba", "Content-Type": "application/json"})
    assert r.status_code == status
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_missing_key_is_401(server):
    r = httpx.get(f"{server}/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_tokenize_detokenize(server):
    h = {"Authorization": "Bearer sk-test-llamba"}
    tokens = httpx.post(f"{server}/tokenize", json={"content": "Hello world"}, headers=h).json()["tokens"]
    assert tokens == loaded(SMOLLM2).tokenizer.encode("Hello world", add_special=False)
    assert httpx.post(f"{server}/detokenize", json={"tokens": tokens}, headers=h).json()["content"] == "Hello world"


def test_multi_byte_tokens_echo_offsets_and_logprob_bytes(client, server):
    """On the real vocabulary, tokens that are whole multi-byte characters ("é": 2 bytes) and a
    token that is one byte of a character: logprob `bytes` are each token's own, echo and
    text_offset count characters (not bytes), and the streamed text is the whole text."""
    h = {"Authorization": "Bearer sk-test-llamba"}
    [e_acute] = httpx.post(f"{server}/tokenize", json={"content": "é"}, headers=h).json()["tokens"]
    tok = loaded(SMOLLM2).tokenizer
    assert tok.token_bytes(e_acute) == "é".encode()
    chat = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=3, temperature=0, logprobs=True,
                                          top_logprobs=2, logit_bias={str(e_acute): 100})
    content = chat.choices[0].logprobs.content
    assert chat.choices[0].message.content == "ééé"
    assert [(t.token, t.bytes) for t in content] == [("é", [0xC3, 0xA9])] * 3
    prompt = "Café 東京: "
    body = dict(model=MODEL, prompt=prompt, max_tokens=3, temperature=0, echo=True, logprobs=1,
                logit_bias={str(e_acute): 100})
    whole = client.completions.create(**body).choices[0]
    assert whole.text == prompt + "ééé" and whole.logprobs.tokens == ["é"] * 3
    assert whole.logprobs.text_offset == [len(prompt), len(prompt) + 1, len(prompt) + 2]
    streamed = "".join(c.choices[0].text for c in client.completions.create(**body, stream=True) if c.choices)
    assert streamed == whole.text
    # one byte of a three-byte character ("東" is e6 9d b1): its logprob's bytes are that byte alone
    partial = next(i for i in range(tok.vocab_size) if tok.token_bytes(i) == b"\xe6")
    cut = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=1, temperature=0, logprobs=True,
                                         logit_bias={str(partial): 100})
    assert cut.choices[0].logprobs.content[0].bytes == [0xE6]
