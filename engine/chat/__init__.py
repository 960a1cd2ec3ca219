"""A chat's conventions, in one place and apart from any API (as llama.cpp's common/chat.cpp):
the model's template (template.py), the tool-call formats (formats/, one class each), the planner that joins
messages, tools and the output format into a prompt and a grammar (planner.py), and the answer
read back as it is generated (answer.py). Chat completions, and the other chat APIs, all go through `plan_chat`."""
from .answer import Change
from .planner import JSON_OBJECT, ChatPlan, ChatRequest, Output, plan_chat
from .template import ChatTemplate, TemplateError
from .formats import ToolCall

__all__ = ["JSON_OBJECT", "Change", "ChatPlan", "ChatRequest", "ChatTemplate", "Output", "TemplateError", "ToolCall", "plan_chat"]
