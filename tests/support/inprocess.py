"""An app in this process, talked to through httpx's ASGI transport: no server, no subprocess."""
from contextlib import asynccontextmanager

import httpx

from llamba.app.main import create_app
from llamba.app.settings import ModelSettings, Settings
from llamba.engine.scheduler import ModelRunner
from tests.support import SMOLLM2, loaded

MODEL = "smollm2-135m-instruct"


@asynccontextmanager
async def client(parallel: int = 4, queue_size: int = 4, model: str = SMOLLM2, model_id: str = MODEL,
                 n_ctx: int = 512):
    """An app whose model runner is made here (the lifespan that loads models is not run)."""
    lm = loaded(model)
    app = create_app(Settings(models=[ModelSettings(id=model_id)], parallel=parallel, queue_size=queue_size))
    st = app.state.llamba
    runner = ModelRunner(lm, n_ctx, queue_size=queue_size, parallel=parallel)
    st.runners, st.ready = {model_id: runner}, True
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://llamba") as c:
            yield c, runner
    finally:
        runner.close()
