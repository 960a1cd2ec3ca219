"""`POST /v1/embeddings` against a real `llamba serve` on the default model, through the openai
SDK, httpx and LangChain's OpenAIEmbeddings (the server of tests/app/conftest.py). Agreement with
llama.cpp's vectors is `python -m bench.embeddings`'s (it needs llama-cpp-python)."""
import base64

import httpx
import numpy as np
import pytest
from openai.types import CreateEmbeddingResponse

from tests.support import MODEL, SMOLLM2, loaded
from tests.support.server import API_KEY

TEXTS = ["The cat sat on the mat.", "Stock markets fell sharply today.", "A kitten rested on the rug."]


def test_vectors_are_unit_length_and_mean_what_the_texts_mean(client):
    r = client.embeddings.create(model=MODEL, input=TEXTS)
    CreateEmbeddingResponse.model_validate(r.model_dump())
    vectors = np.array([d.embedding for d in r.data])
    assert [d.index for d in r.data] == [0, 1, 2] and vectors.shape[1] == 576
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    cat, markets, kitten = vectors
    assert cat @ kitten > cat @ markets  # (a 135M chat model's mean pooling still knows a cat from a market)
    assert r.usage.prompt_tokens == r.usage.total_tokens > len(TEXTS)


def test_base64_token_ids_and_one_string_give_the_same_vectors(client, server):
    floats = client.embeddings.create(model=MODEL, input=TEXTS[0], encoding_format="float").data[0].embedding
    raw = httpx.post(f"{server}/v1/embeddings", headers={"Authorization": f"Bearer {API_KEY}"},
                     json={"model": MODEL, "input": TEXTS[0], "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), "<f4")
    assert np.array_equal(decoded, np.array(floats, np.float32))
    ids = loaded(SMOLLM2).tokenizer.encode(TEXTS[0], add_special=True, parse_special=False)
    tokens = client.embeddings.create(model=MODEL, input=[ids])
    assert np.allclose(tokens.data[0].embedding, floats, atol=1e-6)


@pytest.mark.parametrize("body, param", [({"input": "x", "dimensions": 64}, "dimensions"),
                                         ({"input": "word " * 600}, "input"), ({"input": []}, "input"),
                                         ({"input": [[999999]]}, "input")])
def test_what_cannot_be_embedded_is_a_400_naming_the_field(server, body, param):
    r = httpx.post(f"{server}/v1/embeddings", headers={"Authorization": f"Bearer {API_KEY}"}, json={"model": MODEL, **body})
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_langchain_openai_embeddings(server):
    from langchain_openai import OpenAIEmbeddings
    embeddings = OpenAIEmbeddings(model=MODEL, base_url=f"{server}/v1", api_key=API_KEY, max_retries=0,
                                  check_embedding_ctx_length=False)
    documents = embeddings.embed_documents(TEXTS[:2])
    query = embeddings.embed_query(TEXTS[0])
    assert len(documents) == 2 and np.allclose(query, documents[0], atol=1e-6)
