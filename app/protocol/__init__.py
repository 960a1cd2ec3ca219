"""Each API's types, under its own names, one module per API: OpenAI's completions (chat and text),
its Responses API, Anthropic's Messages API, and the server's own endpoints; `common` holds what
they share. Each request turns itself into the engine's terms (`chat()`: engine/chat's ChatRequest)."""
