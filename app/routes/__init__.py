"""The HTTP endpoints, one router per API family: each checks a request, submits it to a model
runner, and hands the runner's events to its serving module (app/serving/) for the answer."""
from fastapi import APIRouter

from . import completions, embeddings, messages, responses, server

router = APIRouter()
router.include_router(server.router)
router.include_router(completions.router)
router.include_router(responses.router)
router.include_router(messages.router)
router.include_router(embeddings.router)
