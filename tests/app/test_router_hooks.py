"""What routers and schedulers in front of replicas read from each one, through a real server:
`GET /get_load` (vllm-router's power-of-two policy) and vLLM's gauges (the Gateway API Inference
Extension's endpoint picker, llm-d, KServe, the production-stack router)."""
import json
import threading

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import MODEL
from tests.support.server import metrics, running_server, wait_until_idle

LONG = {"model": MODEL, "max_tokens": 2000, "ignore_eos": True, "temperature": 0, "stream": True,
        "messages": [{"role": "user", "content": "Tell me a long story."}]}


@pytest.fixture(scope="module")
def server():
    with running_server("--parallel", "2") as base:
        yield base


def test_get_load_counts_running_requests_and_vllm_gauges_follow(server):
    assert httpx.get(f"{server}/get_load").json() == {"load": 0}
    seen, started, deeper, stop = {}, threading.Event(), threading.Event(), threading.Event()

    def stream():
        tokens = 0
        with httpx.stream("POST", f"{server}/v1/chat/completions", json=LONG, timeout=300) as r:
            for line in r.iter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    tokens += 1
                    started.set()  # a token has been generated (the first chunk only names the role)
                    if tokens == 600:
                        deeper.set()
                    if stop.is_set():
                        break
    reader = threading.Thread(target=stream)
    reader.start()
    try:
        assert started.wait(300)
        seen["load"] = httpx.get(f"{server}/get_load").json()["load"]
        seen["metrics"] = metrics(server)
        assert deeper.wait(300)
        seen["deeper"] = metrics(server)  # 600 tokens on: more of the pool's blocks in use
    finally:
        stop.set()
        reader.join(300)
    assert seen["load"] == 1
    m = seen["metrics"]
    assert m["vllm:num_requests_running"] == m["llamba_requests_running"] == 1
    assert m["vllm:num_requests_waiting"] == 0
    assert 0 < m["vllm:kv_cache_usage_perc"] == m["vllm:gpu_cache_usage_perc"] <= 1
    assert m["vllm:kv_cache_usage_perc"] < seen["deeper"]["vllm:kv_cache_usage_perc"] <= 1
    idle = wait_until_idle(server)
    assert idle["vllm:num_requests_running"] == 0 and httpx.get(f"{server}/get_load").json() == {"load": 0}


def test_cache_config_and_prefix_cache_counters(server):
    body = {"model": MODEL, "max_tokens": 4, "temperature": 0,
            "messages": [{"role": "system", "content": "You are a helpful assistant. " * 20},
                         {"role": "user", "content": "Hi"}]}
    usages = [httpx.post(f"{server}/v1/chat/completions", json=body, timeout=300).json()["usage"] for _ in range(2)]
    assert usages[1]["prompt_tokens_details"]["cached_tokens"] > 0
    m = metrics(server)
    for prefix in ("vllm:prefix_cache", "vllm:gpu_prefix_cache"):
        assert m[f"{prefix}_queries_total"] == m["llamba_prompt_tokens_total"] > 0
        assert m[f"{prefix}_hits_total"] == m["llamba_prompt_tokens_cached_total"] > 0
    info = [s for f in text_string_to_metric_families(httpx.get(f"{server}/metrics").text) for s in f.samples
            if s.name == "vllm:cache_config_info"]
    assert len(info) == 1 and info[0].value == 1
    labels = info[0].labels
    assert labels["model_name"] == MODEL and int(labels["block_size"]) > 0
    # the pool holds every parallel request's whole context (4,096 positions by default)
    assert int(labels["num_gpu_blocks"]) * int(labels["block_size"]) >= 2 * 4096


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
QUESTION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the weather in Paris?"}]


def post(server: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server}{path}", json=body, timeout=300)


@pytest.mark.parametrize("tools", [None, TOOLS], ids=["plain", "tools"])
def test_chat_render_gives_the_prompt_the_request_runs(server, tools):
    """The prompt's token ids, as vllm-router's cache-aware policy asks each replica for them:
    as many as the request's usage counts, and vLLM's /tokenize of the same messages gives them."""
    body = {"model": MODEL, "messages": QUESTION, "max_tokens": 2, "temperature": 0, **({"tools": tools} if tools else {})}
    ids = post(server, "/v1/chat/completions/render", body).json()["token_ids"]
    assert post(server, "/v1/chat/completions", body).json()["usage"]["prompt_tokens"] == len(ids)
    tokenized = post(server, "/tokenize", {"model": MODEL, "messages": QUESTION, "tools": tools}).json()
    assert tokenized["tokens"] == ids and tokenized["count"] == len(ids) and tokenized["max_model_len"] == 4096
    text = post(server, "/detokenize", {"tokens": ids}).json()["content"]
    assert "What is the weather in Paris?" in text and ("get_weather" in text) == bool(tools)


def test_completions_and_responses_render(server):
    prompts = ["The capital of France is", "1, 2, 3,"]
    rendered = post(server, "/v1/completions/render", {"model": MODEL, "prompt": prompts}).json()
    for prompt, item in zip(prompts, rendered, strict=True):
        assert item["token_ids"] == post(server, "/tokenize", {"model": MODEL, "prompt": prompt}).json()["tokens"]
    body = {"model": MODEL, "input": "What is 2 + 2?", "instructions": "Be brief.", "max_output_tokens": 2}
    ids = post(server, "/v1/responses/render", body).json()["token_ids"]
    assert post(server, "/v1/responses", body).json()["usage"]["input_tokens"] == len(ids)


def test_tokenize_takes_llama_servers_body_and_vllms(server):
    llama_server = post(server, "/tokenize", {"content": "Hello world"}).json()
    assert list(llama_server) == ["tokens"] and llama_server["tokens"]
    vllm = post(server, "/tokenize", {"model": MODEL, "prompt": "Hello world", "add_special_tokens": False}).json()
    assert vllm == {"count": len(llama_server["tokens"]), "max_model_len": 4096, "tokens": llama_server["tokens"],
                    "token_strs": None}
    for bad in ({}, {"content": "a", "prompt": "b"}, {"messages": "not a list"}, {"messages": [{"role": "nobody"}]}):
        answer = post(server, "/tokenize", bad)
        assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_request_error", bad
