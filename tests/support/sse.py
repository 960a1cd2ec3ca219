"""Server-sent events as OpenAI's streams send them."""
import json


def events(text: str) -> list[dict]:
    """The JSON of each `data:` event of a whole stream, which must end with [DONE]."""
    data = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert data and data[-1] == "[DONE]", data[-3:]
    return [json.loads(d) for d in data[:-1]]
