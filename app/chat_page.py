"""The chat page at `/` (app/webui/: one HTML page, its script and style, and the Markdown renderer
and HTML sanitizer it uses, vendored from npm). Public, as llama-server's: the API calls it makes
carry the key like any client's. `webui: false` (`--no-webui`) leaves `/` answering 404."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

PAGE = Path(__file__).parent / "webui"


def install(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/webui", StaticFiles(directory=PAGE), name="webui")
