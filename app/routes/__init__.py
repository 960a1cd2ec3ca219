"""The HTTP endpoints, one router per API family: each checks a request, submits it to a model
runner, and hands the runner's events to its serving module (app/serving/) for the answer.

The app takes their routes as they are (`FastAPI(routes=routes)`), not by `include_router`: FastAPI
(0.165) builds an included router's routes again, lazily, at the first request: 0.1 s (Zen 3) on the
way to a restart's first answer."""
from . import completions, embeddings, messages, responses, server

routes = [route for api in (server, completions, responses, messages, embeddings) for route in api.router.routes]
