"""Speculation from the prompt (engine/speculation.py): the lookup, the drafter's pauses, and the
model runner's answers with drafts identical, token ids and logprobs, to its answers without."""
import asyncio

import pytest

from llamba.engine.sampling import SamplingParams
from llamba.engine.speculation import MAX_DRAFT, Drafter, lookup
from tests.support.edits import EDITS, FREE
from tests.support import SMOLLM2, loaded, model_runner


def test_lookup_continues_the_latest_occurrence_of_the_longest_suffix():
    context = [1, 2, 3, 9, 9, 5, 2, 3, 7, 8, 1, 2, 3]
    assert lookup(context, 4) == [9, 9, 5, 2]  # "1 2 3", though "2 3" occurred later
    assert lookup([2, 3, 4, 1, 2, 3, 5, 6, 1, 2, 3], 3) == [5, 6, 1]  # its latest occurrence
    assert lookup([1, 2, 6, 9, 1, 2], 2) == []  # only the last two tokens occurred before: no draft
    assert lookup([1, 2, 3, 4], 4) == []  # nothing repeats
    assert lookup([7, 7, 7, 7, 7], 8) == [7]  # the latest occurrence runs into the end


def test_drafter_shrinks_to_what_was_accepted_and_waits_longer_after_each_miss():
    d = Drafter()
    context = list(range(1, 13)) + [1, 2, 3]
    assert d.draft(context, 100) == list(range(4, 4 + MAX_DRAFT))
    d.record(MAX_DRAFT, 3)
    assert d.draft(context, 100) == [4, 5, 6]
    d.record(3, 3)
    assert len(d.draft(context, 100)) == 6  # accepted whole: twice as long
    waits = []
    for _ in range(3):
        d.record(1, 0)
        waits.append(steps_without_a_draft(d, context))
    assert waits == [1, 2, 4]
    d.record(1, 1)
    assert d.draft(context, 100) == [4, 5]  # accepted: no more waiting


def steps_without_a_draft(d: Drafter, context: list[int]) -> int:
    n = 0
    while not d.draft(context, 100):
        n += 1
    return n


@pytest.fixture(scope="module")
def lm():
    return loaded(SMOLLM2)


async def answers(lm, speculative: bool, texts: list[str], params: SamplingParams):
    """Each text's answer, token ids and logprobs, all submitted at once; and what was drafted
    and accepted."""
    runner = model_runner(lm, n_ctx=1024, speculative=speculative)
    jobs = [runner.submit([lm.chat_prompt_ids([{"role": "user", "content": t}])], params) for t in texts]

    async def collect(job):
        return [(e.token_id, e.logprob, [tuple(t) for t in e.top_logprobs], e.text) async for e in runner.stream(job)]
    out = await asyncio.gather(*map(collect, jobs))
    runner.close(wait=True)
    return out, sum(j.drafted_tokens for j in jobs), sum(j.accepted_tokens for j in jobs)


@pytest.mark.parametrize("texts, params", [
    ([EDITS[0]], SamplingParams(temperature=0, max_tokens=100, logprobs=3)),
    ([EDITS[1], FREE[0]], SamplingParams(temperature=0.7, seed=11, max_tokens=100, logprobs=1))],
    ids=["greedy", "seeded, two at once"])
def test_answers_with_drafts_are_the_answers_without(lm, texts, params):
    """An edit of a given text drafts much and gets most of it accepted; its answer, and a
    free-form one beside it, are the same, bit for bit, as without speculation."""
    without, _, _ = asyncio.run(answers(lm, False, texts, params))
    with_drafts, drafted, accepted = asyncio.run(answers(lm, True, texts, params))
    assert with_drafts == without
    assert accepted > len(without[0]) // 8, (drafted, accepted)  # (it did speculate)
