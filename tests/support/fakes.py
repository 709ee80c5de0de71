"""Fake rollout parts for the collection tests: a codec whose prompt is [2, id], an engine whose prompts
answer all wrong, all right or mixed by their id, an exact verifier, a rollout context over them, and the
recipe's gathering of one step's groups run on that context."""

from types import SimpleNamespace

from rollwise.data.pool import PoolItem, PromptPool
from rollwise.predict.beta import BetaPredictor
from rollwise.rollout.collect import RolloutContext
from rollwise.rollout.engine import Sample, SamplingParams
from rollwise.rollout.modes import WholePaths
from rollwise.verify.base import Score


class FakeCodec:
    eos_token_id, pad_token_id = 1, 0

    def prompt_ids(self, item):
        return [2, item.id]

    def decode(self, ids):
        return " ".join(map(str, ids))

    def answer(self, completion):
        return completion.split()[0]  # the answer token; the EOS follows it


class PatternEngine:
    """Prompt i answers right in sample j when pattern[i % 3][j]: all wrong, all right, or mixed."""

    patterns = {0: [0, 0, 0, 0], 1: [1, 1, 1, 1], 2: [1, 0, 1, 0]}

    def generate(self, requests, params):
        out = []
        for r, req in enumerate(requests):
            pid = req.prompt_ids[1]
            out.append([Sample(r, req.prompt_ids, (), [pid if self.patterns[pid % 3][j % 4] else 999, 1], True)
                        for j in range(req.n)])
        return out


class ExactVerifier:
    def score_batch(self, answers, items):
        return [Score(a == str(it.id), float(a == str(it.id))) for a, it in zip(answers, items)]

    def pop_counts(self):
        return {}


def context(n_prompts):
    pool = PromptPool([PoolItem(id=i, prompt=f"q{i}", answer=str(i)) for i in range(n_prompts)], "file", "fake")
    ctx = RolloutContext(pool, FakeCodec(), PatternEngine(), ExactVerifier(), SamplingParams(), "acc")
    ctx.mode = WholePaths(SamplingParams().max_new_tokens)
    return ctx


def collect(ctx, selector, group_filter, allocator, batch_prompts, n, step, rng, timer):
    """The recipe's gathering of one step's groups (`rollwise.train.gather_groups`) on fake parts."""
    from rollwise.train import gather_groups

    run = SimpleNamespace(cfg=SimpleNamespace(batch_prompts=batch_prompts, samples_per_prompt=n), ctx=ctx,
                          rollout=ctx.mode, selector=selector, allocator=allocator, group_filter=group_filter,
                          streams=SimpleNamespace(train=rng), predictor=BetaPredictor(len(ctx.pool), decay=1.0))
    return gather_groups(run, step, timer)
