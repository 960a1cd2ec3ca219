"""Anthropic's Messages API against a real `llamba serve` on the default model, through the
anthropic SDK and LangChain's ChatAnthropic (the server of tests/app/conftest.py: an API key, one
request at a time)."""
import anthropic
import pytest

from tests.support import MODEL
from tests.support.server import API_KEY

WEATHER = {"name": "get_weather", "description": "The current weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
ASK = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0}  # (from the body: this SDK release takes no sampling arguments)


@pytest.fixture
def claude(server):
    return anthropic.Anthropic(base_url=server, api_key=API_KEY, max_retries=0)


def test_a_message_its_stream_and_its_token_count_agree(claude):
    whole = claude.messages.create(model=MODEL, max_tokens=40, extra_body=GREEDY, system="Answer briefly.", messages=ASK)
    assert whole.stop_reason in ("end_turn", "max_tokens") and whole.content[0].text.strip()
    with claude.messages.stream(model=MODEL, max_tokens=40, extra_body=GREEDY, system="Answer briefly.",
                                messages=ASK) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == final.content[0].text == whole.content[0].text
    count = claude.messages.count_tokens(model=MODEL, system="Answer briefly.", messages=ASK)
    # (Anthropic's usage counts the prompt tokens read from the cache apart from the others)
    assert count.input_tokens == final.usage.input_tokens + (final.usage.cache_read_input_tokens or 0)


def test_system_blocks_are_the_system_text_and_a_stop_sequence_ends_the_answer_before_it(claude):
    plain = claude.messages.create(model=MODEL, max_tokens=40, extra_body=GREEDY, system="Answer briefly.", messages=ASK)
    blocks = claude.messages.create(model=MODEL, max_tokens=40, extra_body=GREEDY, messages=ASK,
                                    system=[{"type": "text", "text": "Answer briefly."}])
    assert blocks.content[0].text == plain.content[0].text
    assert blocks.usage.input_tokens + (blocks.usage.cache_read_input_tokens or 0) == \
        plain.usage.input_tokens + (plain.usage.cache_read_input_tokens or 0)
    describe = [{"role": "user", "content": "Describe Paris in one sentence."}]
    text = claude.messages.create(model=MODEL, max_tokens=40, extra_body=GREEDY, messages=describe).content[0].text
    words = text.split()
    assert len(words) >= 3, text
    word = words[len(words) // 2]  # the answer goes on past it; it ends at the word's first occurrence
    stopped = claude.messages.create(model=MODEL, max_tokens=40, extra_body=GREEDY, messages=describe,
                                     stop_sequences=["zzz", word])
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == word
    assert stopped.content[0].text == text[:text.index(word)]


def test_a_forced_tool_use_and_its_result_round_trip(claude):
    ask = [{"role": "user", "content": "What is the weather in Lyon?"}]
    called = claude.messages.create(model=MODEL, max_tokens=64, extra_body=GREEDY, tools=[WEATHER], messages=ask,
                                    tool_choice={"type": "tool", "name": "get_weather"})
    (use,) = [b for b in called.content if b.type == "tool_use"]
    assert called.stop_reason == "tool_use" and use.name == "get_weather" and set(use.input) == {"city"}
    answer = claude.messages.create(model=MODEL, max_tokens=64, extra_body=GREEDY, tools=[WEATHER], messages=[
        *ask, {"role": "assistant", "content": called.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 21 C"}]}])
    uses = [b for b in answer.content if b.type == "tool_use"]
    if answer.stop_reason == "tool_use":  # the model may call again, or answer in words
        assert uses and all(u.name == "get_weather" and set(u.input) == {"city"} for u in uses)
    else:
        assert answer.stop_reason in ("end_turn", "max_tokens") and not uses and answer.content[0].text
    assert answer.usage.input_tokens + (answer.usage.cache_read_input_tokens or 0) > \
        called.usage.input_tokens + (called.usage.cache_read_input_tokens or 0)  # the call and result are in


def test_errors_are_anthropics(server):
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=server, api_key="wrong", max_retries=0).messages.create(
            model=MODEL, max_tokens=8, messages=ASK)
    with pytest.raises(anthropic.NotFoundError) as e:
        anthropic.Anthropic(base_url=server, api_key=API_KEY, max_retries=0).messages.create(
            model="claude-none", max_tokens=8, messages=ASK)
    assert e.value.body["error"]["type"] == "not_found_error"


def test_langchain_chat_anthropic_invokes(server):
    from langchain_anthropic import ChatAnthropic
    chat = ChatAnthropic(model=MODEL, base_url=server, api_key=API_KEY, max_tokens=32, temperature=0, max_retries=0)
    said = anthropic.Anthropic(base_url=server, api_key=API_KEY, max_retries=0).messages.create(
        model=MODEL, max_tokens=32, extra_body=GREEDY, messages=[{"role": "user", "content": "Say hello."}])
    assert chat.invoke("Say hello.").content == said.content[0].text
