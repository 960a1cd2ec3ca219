"""A chat's conventions, in one place and apart from any API (as llama.cpp's common/chat.cpp):
the model's template (template.py), the tool-call formats (tools.py), and the planner that joins
messages, tools and the output format into a prompt and a grammar, and reads the answer back
(planner.py). Chat completions, and the other chat APIs, all go through `plan_chat`."""
from .planner import JSON_OBJECT, ChatPlan, Output, plan_chat
from .template import ChatTemplate, TemplateError
from .tools import ToolCall

__all__ = ["JSON_OBJECT", "ChatPlan", "ChatTemplate", "Output", "TemplateError", "ToolCall", "plan_chat"]
