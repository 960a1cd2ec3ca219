"""The chat planner (engine/chat/planner.py) and the tool-call formats (engine/chat/formats/),
directly: what the template gets, which grammar and triggers come out, and how answers are read
back. The default model's template knows nothing of tools (the generic format); the synthetic
model carries Llama 3.2's (the llama3 format)."""
import json

import pytest

from llamba.engine.chat import JSON_OBJECT, ChatRequest, Output, plan_chat
from llamba.engine.chat import formats
from llamba.engine.chat.formats import FORMATS
from llamba.engine.chat.answer import AnswerReader
from llamba.engine.errors import InvalidRequest
from tests.support import DATA, SMOLLM2, loaded

LLAMA3 = "synth-llama3-small-q4_0"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
ASK = [{"role": "user", "content": "Weather in Lyon?"}]


def plan_of(lm, messages, tools=(), choice=None, name=None, output=None):
    return plan_chat(lm, ChatRequest(messages, list(tools), choice, name, output=output))


def prompt_text(name, plan):
    return loaded(name).tokenizer.decode(plan.prompt_ids)


def test_without_tools_the_prompt_is_the_templates_and_only_an_output_format_constrains():
    lm = loaded(SMOLLM2)
    plain = plan_of(lm, ASK)
    assert plain.prompt_ids == lm.chat_prompt_ids(ASK) and plain.grammar is None and plain.tool_format is None
    assert read(plain.tool_format, "Sunny.") == ("Sunny.", [])
    constrained = plan_of(lm, ASK, output=JSON_OBJECT)
    assert constrained.grammar and constrained.grammar_from == "output" and not constrained.triggers
    # tools with tool_choice "none": left out of the prompt, nothing parsed
    assert plan_of(lm, ASK, [WEATHER], "none").prompt_ids == plain.prompt_ids


@pytest.mark.parametrize("choice, name, message", [
    ("required", None, "no tools are given"), ("named", "get_weather", "no tools are given")])
def test_a_tool_choice_without_tools_is_refused(choice, name, message):
    with pytest.raises(InvalidRequest, match=message) as e:
        plan_of(loaded(SMOLLM2), ASK, [], choice, name)
    assert e.value.param == "tool_choice"


def test_bad_tools_and_bad_output_formats_name_their_concept():
    lm = loaded(SMOLLM2)
    with pytest.raises(InvalidRequest) as e:
        plan_of(lm, ASK, [WEATHER], "named", "get_time")
    assert e.value.param == "tool_choice"
    with pytest.raises(InvalidRequest) as e:
        plan_of(lm, ASK, [{"type": "function", "function": {"name": ""}}], "required")
    assert e.value.param == "tools"
    with pytest.raises(InvalidRequest) as e:
        plan_of(lm, ASK, output=Output(json_schema=5))  # (grammars themselves compile at submission)
    assert e.value.param == "output"


def test_the_generic_format_asks_in_a_system_message_joined_to_the_users_own():
    lm = loaded(SMOLLM2)
    plan = plan_of(lm, [{"role": "system", "content": "Be brief."}, *ASK], [WEATHER, TIME], "auto")
    text = prompt_text(SMOLLM2, plan)
    assert plan.tool_format.name == "generic" and plan.grammar_from == "tools" and plan.triggers == ()
    assert text.count("<|im_start|>system") == 1 and "Be brief.\n\nRespond in JSON format" in text
    assert '"get_weather"' in text and '"get_time"' in text
    # a named choice lists only that tool
    assert '"get_time"' not in prompt_text(SMOLLM2, plan_of(lm, ASK, [WEATHER, TIME], "named", "get_weather"))


def test_the_llama3_format_gives_the_template_the_tools_and_waits_lazily_when_auto():
    lm = loaded(LLAMA3)
    auto = plan_of(lm, ASK, [WEATHER], "auto")
    assert auto.tool_format.name == "llama3" and auto.triggers  # free words unless the answer starts a call
    assert "get_weather" in prompt_text(LLAMA3, auto)
    assert plan_of(lm, ASK, [WEATHER], "required").triggers == ()


def read(fmt, text):
    """(content, tool calls) of a whole answer in `fmt` (a format or its name; None: plain text)."""
    reader = AnswerReader(FORMATS[fmt] if isinstance(fmt, str) else fmt)
    reader.push(text)
    reader.finish()
    return reader.result()


def test_answers_are_read_back_as_calls_or_text():
    assert read("generic", '{"tool_call": {"name": "get_weather", "arguments": {"city": "Lyon"}}}')[1][0].arguments \
        == {"city": "Lyon"}
    content, calls = read("generic", '{"tool_calls": [{"name": "a", "arguments": {}}, {"name": "b"}]}')
    assert content is None and [c.name for c in calls] == ["a", "b"]
    assert read("generic", '{"response": "It is sunny."}') == ("It is sunny.", [])
    assert read("generic", '{"tool_call": {"name": "get_weath') == (None, [])  # cut: no envelope as text
    assert read("generic", '{}') == ('{}', [])
    assert read("generic", 'Sunny, 21 C.') == ('Sunny, 21 C.', [])  # words after a tool's result
    content, calls = read("llama3", '<|python_tag|>{"name": "a", "parameters": {"x": 1}}; {"name": "b", "parameters": {}}')
    assert content is None and [(c.name, c.arguments) for c in calls] == [("a", {"x": 1}), ("b", {})]
    assert read("llama3", '{"name": "a", "parameters": {}} and more') == ('{"name": "a", "parameters": {}} and more', [])
    assert read("llama3", "Hello") == ("Hello", [])
    assert read("llama3", "") == ("", [])
    content, calls = read("llama3", '{"name": "a", "parameters": {}}; {"name": "b", "param')
    assert content is None and [c.name for c in calls] == ["a"]  # cut in the second call
    call = formats.ToolCall("a", {"é": 1})
    assert call.id.startswith("call_") and json.loads(call.json_arguments()) == {"é": 1}


def streamed(fmt, text, piece=1):
    """The reader's changes with `text` pushed `piece` characters at a time, and its result."""
    reader = AnswerReader(FORMATS[fmt])
    changes = [c for i in range(0, len(text), piece) for c in reader.push(text[i:i + piece])] + reader.finish()
    return changes, reader.result()


def test_a_calls_arguments_stream_as_they_are_written():
    text = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Lyon", "days": [1, 2]}}, {"name": "get_time"}]}'
    changes, (content, calls) = streamed("generic", text)
    assert content is None and [c.name for c in calls] == ["get_weather", "get_time"]
    first = [c for c in changes if c.part.index == 0]
    assert [c.kind for c in first[:1]] == ["opened"] and first[-1].kind == "closed"
    added = [c.text for c in first if c.kind == "added"]
    assert len(added) > 10 and "".join(added) == calls[0].json_arguments() == '{"city": "Lyon", "days": [1, 2]}'
    # the first call closes before the second opens, and the second's missing arguments are {}
    kinds = [(c.kind, c.part.index) for c in changes if c.kind != "added"]
    assert kinds == [("opened", 0), ("closed", 0), ("opened", 1), ("closed", 1)]
    assert calls[1].json_arguments() == "{}" and calls[1].arguments == {}
    # any split of the text reads the same
    for piece in (2, 7, len(text)):
        assert streamed("generic", text, piece)[1][1][0].json_arguments() == calls[0].json_arguments()


def test_the_envelopes_words_stream_as_text_escapes_whole():
    words = r'Il fait beau \u00e0 Lyon\n\"21\" \ud83d\ude00 !'
    changes, (content, calls) = streamed("generic", '{"response": "' + words + '"}')
    assert content == json.loads('"' + words + '"') and not calls
    added = [c.text for c in changes if c.kind == "added"]
    assert "".join(added) == content and len(added) > 10
    assert all(not "\ud800" <= ch <= "\udfff" for piece in added for ch in piece)  # a pair arrives as one character


def test_a_call_cut_short_streams_what_was_written_and_is_not_in_the_result():
    changes, (content, calls) = streamed("llama3", '<|python_tag|>{"name": "a", "parameters": {"x": 1}}; {"name": "b", "parameters": {"y"')
    assert content is None and [c.name for c in calls] == ["a"]
    cut = [c for c in changes if c.part.index == 1]
    assert cut[0].kind == "opened" and cut[-1].kind == "closed" and cut[-1].part.cut
    assert "".join(c.text for c in cut if c.kind == "added") == '{"y"'
    # text answers stream as they come, the python tag's prefix held until it is known not to be one
    changes, (content, _) = streamed("llama3", "<|pyt")
    assert content == "<|pyt" and [c.kind for c in changes] == ["opened", "added", "closed"]


def test_past_calls_and_results_are_written_as_the_model_was_asked():
    call = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'}}]}
    llama3 = FORMATS["llama3"].history_message(call)
    assert llama3["tool_calls"][0]["function"]["arguments"] == {"city": "Lyon"}
    generic = FORMATS["generic"].history_message(call)
    assert json.loads(generic["content"]) == {"tool_call": {"name": "get_weather", "arguments": {"city": "Lyon"}}}
    result = FORMATS["generic"].history_message({"role": "tool", "name": "get_weather", "content": "sunny"})
    assert json.loads(result["content"]) == {"tool_response": {"tool": "get_weather", "content": "sunny"}}
    bad = {**call, "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}
    with pytest.raises(InvalidRequest) as e:
        FORMATS["llama3"].history_message(bad)
    assert e.value.param == "messages"


def test_declared_arguments_only_unless_the_schema_allows_more():
    schema = {"type": "object", "properties": {"city": {"type": "string"},
                                               "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
                                               "tags": {"type": "array", "items": {"type": "object", "properties": {}}}},
              "$defs": {"unit": {"type": "object", "properties": {"name": {"type": "string"}}}}}
    out = formats.closed(schema)
    assert out["additionalProperties"] is False and out["properties"]["where"]["additionalProperties"] is False
    assert out["properties"]["tags"]["items"]["additionalProperties"] is False
    assert out["$defs"]["unit"]["additionalProperties"] is False and "additionalProperties" not in schema
    open_schema = {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}}
    assert formats.closed(open_schema) == open_schema
    assert formats.closed({"type": "object", "properties": {}, "additionalProperties": True})["additionalProperties"] is True


def test_after_a_tool_result_the_generic_format_lets_the_answer_be_words():
    lm = loaded(SMOLLM2)
    result = [*ASK, {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "sunny"}]
    plan = plan_of(lm, result, [WEATHER], "auto")
    assert plan.triggers == ("{",) and "plain words" in prompt_text(SMOLLM2, plan)
    assert read(plan.tool_format, "It is sunny in Lyon.") == ("It is sunny in Lyon.", [])
    assert plan_of(lm, result, [WEATHER], "required").triggers == ()  # a call is still a call


def test_hermes_calls_read_back_stream_and_any_split_reads_the_same():
    text = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lyon"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>')
    for piece in (1, 3, len(text)):
        changes, (content, calls) = streamed("hermes", text, piece)
        assert content is None and [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Lyon"}),
                                                                              ("get_time", {})]
    added = "".join(c.text for c in changes if c.kind == "added" and c.part.index == 0)
    assert added == '{"city": "Lyon"}'
    assert read("hermes", "It is sunny.") == ("It is sunny.", [])
    assert read("hermes", '<tool_call>\n{"name": "a", "argum') == (None, [])  # cut: neither call nor text
    assert read("hermes", "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call> and more")[0] is not None


def test_hermes_is_chosen_for_qwens_templates_and_its_grammar_uses_the_tags_tokens():
    for template in ("Qwen-Qwen2.5-7B-Instruct.jinja", "Qwen-Qwen3-0.6B.jinja"):
        assert formats.for_template((DATA / "templates" / template).read_text()).name == "hermes"
    hermes = FORMATS["hermes"]
    lark, triggers = hermes.grammar([WEATHER], "auto", False, False, {"<tool_call>": 1, "</tool_call>": 2})
    assert triggers == ("<tool_call>",) and "call: <tool_call>" in lark
    lark, triggers = hermes.grammar([WEATHER], "required", True, False, {})
    assert triggers == () and 'call: "<tool_call>"' in lark


def thought(text, thinking, fmt=None, piece=1):
    """(reasoning, content, calls, the reasoning's streamed text) of an answer read `piece` characters at a time."""
    reader = AnswerReader(FORMATS[fmt] if fmt else None, thinking)
    changes = [c for i in range(0, len(text), piece) for c in reader.push(text[i:i + piece])] + reader.finish()
    streamed = "".join(c.text for c in changes if c.kind == "added" and c.part.reasoning)
    return reader.reasoning, *reader.result(), streamed


def test_thinking_is_read_apart_from_the_answer_whatever_the_split():
    text = "<think>\nThe user greets me. </thin is not the end.\n</think>\n\nHello!"
    for piece in (1, 2, 5, len(text)):
        assert thought(text, "maybe", piece=piece) == (
            "The user greets me. </thin is not the end.", "Hello!", [], "The user greets me. </thin is not the end.")
    # the prompt opened it (a template that ends its generation prompt with <think>)
    assert thought("Let me see.</think>Yes.", "open")[:2] == ("Let me see.", "Yes.")
    # no thinking: all of it is the answer; a short answer, or one cut while thinking
    assert thought("Hello <think>", "maybe")[:2] == (None, "Hello <think>")
    assert thought("<th", "maybe")[:2] == (None, "<th")
    assert thought("<think>Hmm, so", "maybe")[:2] == ("Hmm, so", "")
    # then a tool call, its part after the reasoning's
    reasoning, content, calls, _ = thought(
        '<think>I need the weather.</think>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lyon"}}\n'
        '</tool_call>', "maybe", "hermes", 3)
    assert reasoning == "I need the weather." and content is None and calls[0].arguments == {"city": "Lyon"}


def test_the_planner_tells_whether_a_qwen3_answer_may_think():
    from tests.support.families import family_model
    from llamba.engine.loader import LoadedModel
    lm = LoadedModel.load(family_model("synth-qwen3-f32"))
    assert plan_chat(lm, ChatRequest(ASK)).thinking == "maybe"
    off = plan_chat(lm, ChatRequest(ASK, template_kwargs={"enable_thinking": False}))
    assert off.thinking is None and lm.tokenizer.decode(off.prompt_ids).endswith("<think>\n\n</think>\n\n")
    assert plan_of(loaded(SMOLLM2), ASK).thinking is None


def test_mistral_calls_read_back_stream_and_any_split_reads_the_same():
    text = ('[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Lyon"}, "id": "a1b2c3d4e"}, '
            '{"name": "get_time", "arguments": {}, "id": "f5g6h7i8j"}]')
    for piece in (1, 4, len(text)):
        changes, (content, calls) = streamed("mistral", text, piece)
        assert content is None and [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Lyon"}),
                                                                              ("get_time", {})]
    assert "".join(c.text for c in changes if c.kind == "added" and c.part.index == 0) == '{"city": "Lyon"}'
    assert read("mistral", "It is sunny.") == ("It is sunny.", [])
    assert read("mistral", '[TOOL_CALLS][{"name": "a", "argu') == (None, [])  # cut: neither call nor text


def test_mistral_is_chosen_for_its_template_and_past_calls_get_the_ids_it_demands():
    from tests.support.families import family_model
    from llamba.engine.loader import LoadedModel
    lm = LoadedModel.load(family_model("synth-llama-spm-f32"))  # (Mistral Nemo's template)
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_0123456789abcdef", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'}}]},
        {"role": "tool", "tool_call_id": "call_0123456789abcdef", "content": "Sunny"}]
    turn = plan_chat(lm, ChatRequest(history, [WEATHER], "required"))
    assert turn.tool_format.name == "mistral" and turn.triggers == () and '"[TOOL_CALLS]"' in turn.grammar
    text = lm.tokenizer.decode(turn.prompt_ids)
    (call_id,) = {m for m in __import__("re").findall(r'"(?:id|call_id)": "(\w+)"', text)}
    assert len(call_id) == 9 and "[AVAILABLE_TOOLS]" in text and "[TOOL_RESULTS]" in text
    assert plan_chat(lm, ChatRequest(ASK, [WEATHER])).triggers == ("[TOOL_CALLS]",)
