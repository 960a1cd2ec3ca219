"""The responses the Responses API keeps (`store`, default true as OpenAI's): in memory, for
`previous_response_id` and `GET`/`DELETE /v1/responses/{id}`, the oldest evicted first once more
than `capacity` are kept."""
from __future__ import annotations

from collections import OrderedDict

from .protocol.responses import Response


class ResponseStore:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self._kept: OrderedDict[str, tuple[Response, list[dict]]] = OrderedDict()

    def put(self, response: Response, conversation: list[dict]) -> None:
        """Keep `response` and the chat that led to it, its own output included."""
        self._kept[response.id] = (response, conversation)
        while len(self._kept) > self.capacity:
            self._kept.popitem(last=False)

    def get(self, response_id: str) -> tuple[Response, list[dict]] | None:
        return self._kept.get(response_id)

    def delete(self, response_id: str) -> None:
        self._kept.pop(response_id, None)
