"""Replicas behind the real vllm-router (PyPI, pinned): its cache-aware policy keeps a conversation on
the replica that holds its prefix (it asks every replica for the prompt's tokens first: llamba's
render endpoints), power-of-two reads each replica's `/get_load`, and retries and health checks
carry requests past a replica killed, stopped or still loading. Three replicas of the default
model, one thread each, on loopback."""
import json
import os
import random
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import anthropic
import httpx
import openai
import pytest

from tests.support import MODEL
from tests.support.nginx import nginx_in_front
from tests.support.router import deployed_flags, replicas, router_calls, vllm_router
from tests.support.server import free_port, metrics, server_process

TURNS, CONVERSATIONS = 4, 8
# the flags deploy/ gives the router (docker-compose.yml says why)
FLAGS = deployed_flags()
WORDS = ("river mountain lantern copper violin harbor meadow glacier orchard falcon canyon ember prism "
         "saddle thunder willow marble compass pepper tundra").split()


@pytest.fixture(scope="module")
def three():
    with replicas(3) as servers:
        yield servers


def requests_served(servers) -> list[float]:
    return [metrics(base)["llamba_requests_total"] for base, _ in servers]


def opener(tag: str, i: int) -> str:
    """A conversation's own first message, unlike every other's from its first words on (seeded)."""
    rng = random.Random(f"{tag}-{i}")
    return f"Conversation {tag} {i}: " + " ".join(rng.choice(WORDS) for _ in range(40)) + ". Summarise."


def converse(base: str, tag: str, i: int) -> list[tuple[int, int]]:
    """Conversation `i` of 4 turns through the router, by chat completions, completions or the
    Responses API (i % 3): each turn's (prompt tokens, cached prompt tokens)."""
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
    said, seen = [opener(tag, i)], []
    for turn in range(TURNS):
        if i % 3 == 0:
            messages = [{"role": "user" if k % 2 == 0 else "assistant", "content": s} for k, s in enumerate(said)]
            r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, temperature=0)
            answer, usage = r.choices[0].message.content, r.usage
            seen.append((usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens))
        elif i % 3 == 1:
            prompt = "".join(f"{'User' if k % 2 == 0 else 'Assistant'}: {s}\n" for k, s in enumerate(said))
            r = client.completions.create(model=MODEL, prompt=prompt + "Assistant:", max_tokens=8, temperature=0)
            answer, usage = r.choices[0].text, r.usage
            seen.append((usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens))
        else:
            items = [{"role": "user" if k % 2 == 0 else "assistant", "content": s} for k, s in enumerate(said)]
            r = client.responses.create(model=MODEL, input=items, max_output_tokens=8, temperature=0)
            answer, usage = r.output_text, r.usage
            seen.append((usage.input_tokens, usage.input_tokens_details.cached_tokens))
        said += [answer or "...", f"Turn {turn + 2}: and then?"]
    return seen


def held_prefix(servers, tag: str, *flags: str) -> tuple[float, list[float]]:
    """8 concurrent conversations through a router with these flags: the fraction of later turns
    whose replica held more than half the previous turn's prompt, and each replica's requests."""
    before = requests_served(servers)
    with vllm_router([base for base, _ in servers], *flags) as router:
        with ThreadPoolExecutor(CONVERSATIONS) as pool:
            conversations = list(pool.map(lambda i: converse(router, tag, i), range(CONVERSATIONS)))
    later = [cached > previous / 2 for turns in conversations
             for (previous, _), (_, cached) in zip(turns, turns[1:])]
    return sum(later) / len(later), [b - a for a, b in zip(before, requests_served(servers))]


def test_cache_aware_keeps_each_conversation_on_the_replica_that_holds_it(three):
    """cache_aware as vLLM ships it, as deploy/ runs it (balancing sooner: some turns move to a less
    busy replica), and round_robin for comparison."""
    held, shares = held_prefix(three, "ca", "cache_aware")
    held_ours, shares_ours = held_prefix(three, "ours", "cache_aware", *FLAGS)
    held_rr, shares_rr = held_prefix(three, "rr", "round_robin")
    print(f"\nturns 2-4 with their prefix cached (requests per replica): cache_aware {held:.0%} {shares}, "
          f"with deploy/'s flags {held_ours:.0%} {shares_ours}, round_robin {held_rr:.0%} {shares_rr}")
    assert held >= 0.9 and held_ours > held_rr < held
    for served in (shares, shares_ours, shares_rr):
        assert all(n > 0 for n in served) and sum(served) == CONVERSATIONS * TURNS
    for _, proc in three:  # every render call answered, none fell back to /tokenize
        calls = router_calls(proc)
        assert all(set(statuses) <= {"200"} for statuses in calls.values()), calls
        assert calls["/v1/chat/completions/render"] and calls["/v1/completions/render"] and not calls["/tokenize"]


def test_messages_and_responses_pass_through_the_router(three):
    with vllm_router([base for base, _ in three], "round_robin") as router:
        client = anthropic.Anthropic(base_url=router, api_key="unused", max_retries=0)
        m = client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "Hi"}])
        assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 8 and m.content[0].text
        stream = openai.OpenAI(base_url=f"{router}/v1", api_key="unused").responses.create(
            model=MODEL, input="Hi", max_output_tokens=8, stream=True)
        events = [event.type for event in stream]
        assert events[0] == "response.created" and events[-1] == "response.incomplete"


def test_the_compose_path_nginx_then_the_router_then_a_replica_streams(three, tmp_path):
    """docker-compose.yml's chain on loopback: deploy/nginx.conf in front of vllm-router started by
    deploy/router/replicas.py (here over the one replica "localhost" resolves to): curl's stream
    arrives chunk by chunk, whole."""
    replica = three[2][0].removeprefix("http://127.0.0.1:")
    with vllm_router([], "cache_aware", *FLAGS, replicas_host=f"localhost:{replica}") as router, \
            nginx_in_front(router, tmp_path) as edge:
        body = json.dumps({"model": MODEL, "stream": True, "max_tokens": 20, "temperature": 0, "ignore_eos": True,
                           "messages": [{"role": "user", "content": "Count from 1 to 20."}]})
        curl = subprocess.run(["curl", "-sN", f"{edge}/v1/chat/completions", "-H", "Content-Type: application/json",
                               "-d", body], capture_output=True, text=True, timeout=300)
    events = [line[6:] for line in curl.stdout.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert sum(bool(c["choices"] and c["choices"][0]["delta"].get("content")) for c in chunks) == 20


def test_power_of_two_sends_fewer_requests_to_a_busy_replica(three):
    """Replica 0 busy with two long generations sent to it directly (only its /get_load tells the
    router): of 12 short requests through the router, it gets fewer than each idle replica."""
    busy, stop = three[0][0], threading.Event()
    long = {"model": MODEL, "max_tokens": 3000, "ignore_eos": True, "stream": True,
            "messages": [{"role": "user", "content": "Tell me a long story."}]}
    streaming = threading.Barrier(3)

    def generate():
        with httpx.stream("POST", f"{busy}/v1/chat/completions", json=long, timeout=600) as r:
            for n, _ in enumerate(r.iter_lines()):
                if n == 4:
                    streaming.wait()
                if stop.is_set():
                    return
    threads = [threading.Thread(target=generate) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        streaming.wait(300)
        before = requests_served(three)
        with vllm_router([base for base, _ in three], "power_of_two") as router:
            polled = lambda: router_calls(three[0][1])["/get_load"].get("200", 0)  # noqa: E731
            first = polled()
            while polled() < first + 2:  # the router has read the busy replica's load since it started
                time.sleep(0.1)
            for _ in range(12):
                r = httpx.post(f"{router}/v1/chat/completions", timeout=300, json={
                    "model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]})
                assert r.status_code == 200
        served = [b - a for a, b in zip(before, requests_served(three))]
    finally:
        stop.set()
        for t in threads:
            t.join(600)
    print(f"\npower_of_two, requests per replica (the first busy): {served}")
    assert served[0] < min(served[1:]) and sum(served) == 12


def router_sees_healthy(router: str, url: str, patience: float = 120) -> bool:
    """Whether the router lists `url` as healthy, waiting for its health checks to see it (`patience`
    is a guard against a hang, not a speed check)."""
    deadline = time.monotonic() + patience
    while not any(w["url"] == url and w["is_healthy"] for w in httpx.get(f"{router}/workers").json()["workers"]):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def log_lines(proc, marker: str = "HTTP/1.1") -> list[str]:
    """A replica's access log, and its lines with `marker`."""
    proc.log.seek(0)
    return [line for line in proc.log.read().splitlines() if "HTTP/1.1" in line or marker in line]


def test_a_replica_killed_stopped_or_loading_loses_no_request(three):
    """4 requests a second for 20 s (chat and completions, alternating) through cache_aware over
    four replicas: one is SIGKILLed at 5 s, one given SIGTERM at 10 s (it drains), and the fourth
    only starts at 2 s, answering 503 while it loads. Every request is answered whole. (The last
    test here: it ends two of the module's replicas.)"""
    late_port = free_port()
    answers, errors = [], []
    with ExitStack() as stack:
        router = stack.enter_context(vllm_router([base for base, _ in three] + [f"http://127.0.0.1:{late_port}"],
                                                 "cache_aware", *FLAGS))

        def ask(n: int):
            client = openai.OpenAI(base_url=f"{router}/v1", api_key="unused", max_retries=0, timeout=300)
            try:
                if n % 2:
                    r = client.chat.completions.create(model=MODEL, max_tokens=6, temperature=0, messages=[
                        {"role": "user", "content": f"Request {n}: name a colour."}])
                    choice = r.choices[0]
                    answers.append((choice.finish_reason, choice.message.content, r.usage.completion_tokens))
                else:
                    r = client.completions.create(model=MODEL, prompt=f"Request {n}: the sky is", max_tokens=6,
                                                  temperature=0)
                    answers.append((r.choices[0].finish_reason, r.choices[0].text, r.usage.completion_tokens))
            except openai.APIError as e:
                errors.append(f"{n}: {e!r}")

        with ThreadPoolExecutor(16) as pool:
            start = time.monotonic()
            for n in range(80):  # a steady rate of requests: the schedule, not a time bound
                time.sleep(max(0.0, start + n / 4 - time.monotonic()))
                pool.submit(ask, n)
                if n == 8:  # compiling its kernels afresh: seconds of 503s. (Its start waits for its health: in
                    # the pool, so that the requests go on)
                    cold = {"NUMBA_CACHE_DIR": stack.enter_context(tempfile.TemporaryDirectory())}
                    late = pool.submit(stack.enter_context, server_process("--threads", "1", env=cold, port=late_port))
                elif n == 20:
                    os.kill(three[0][1].pid, signal.SIGKILL)
                elif n == 40:
                    three[1][1].send_signal(signal.SIGTERM)
        assert not errors and len(answers) == 80, errors
        assert all(reason in ("stop", "length") and text and 0 < tokens <= 6 for reason, text, tokens in answers)
        drained = three[1][1]
        drained.wait(120)
        # what it was asked to generate: everything before SIGTERM answered, then those it was running
        # answered and new ones refused with 503, which the router retried elsewhere (it answers the
        # router's render calls 503 too: not counted)
        before, _, after = "\n".join(log_lines(drained, marker="SIGTERM: refusing")).partition("SIGTERM: refusing")
        generated = [[line for line in part.splitlines() if '"POST /v1/' in line and "/render" not in line]
                     for part in (before, after)]
        assert generated[0] and all(line.endswith('" 200 OK') for line in generated[0])
        assert all(line.endswith(('" 200 OK', '" 503 Service Unavailable')) for line in generated[1])
        late_proc = late.result()[1]  # (once it is healthy)
        assert router_sees_healthy(router, f"http://127.0.0.1:{late_port}")
        client = openai.OpenAI(base_url=f"{router}/v1", api_key="unused", max_retries=0)
        for i in range(8):  # prompts unlike any before (no template): cache_aware may send them to it now
            client.completions.create(model=MODEL, max_tokens=2, prompt=opener("late", i))
        lines = log_lines(late_proc)
        healthy = next(k for k, line in enumerate(lines) if '"GET /health' in line and '" 200' in line)
        assert not any('"POST /v1/' in line for line in lines[:healthy])
        served = [line for line in lines if '"POST /v1/' in line and "/render" not in line]
        print(f"\nkilled at 5 s, drained at 10 s, one loading from 2 s: {len(answers)} of 80 answered whole; "
              f"the drained replica answered {len(generated[0])} requests, then {len(generated[1])} while it "
              f"drained; the late one answered 503 to /health {sum('503' in line for line in lines[:healthy])} "
              f"times while it loaded and got no request, then {len(served)} of 8 new prompts")
