"""An app in this process, talked to through httpx's ASGI transport: no server, no subprocess."""
from contextlib import asynccontextmanager

import httpx

from llamba.app.main import create_app
from llamba.app.settings import ModelSettings, Settings
from tests.support import MODEL, SMOLLM2, loaded, model_runner


@asynccontextmanager
async def serving(runner, model_id: str = MODEL, **settings):
    """The app with `runner` as its one model (the lifespan that loads models is not run)."""
    app = create_app(Settings(models=[ModelSettings(id=model_id)], **settings))
    st = app.state.llamba
    st.pool.models[model_id].runner, st.ready = runner, True
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://llamba") as c:
            yield c
    finally:
        runner.close()


@asynccontextmanager
async def client(parallel: int = 4, queue_size: int = 4, model: str = SMOLLM2, model_id: str = MODEL,
                 n_ctx: int = 512):
    """The app with a real model runner made here."""
    runner = model_runner(loaded(model), n_ctx=n_ctx, queue_size=queue_size, parallel=parallel)
    async with serving(runner, model_id, parallel=parallel, queue_size=queue_size) as c:
        yield c, runner
