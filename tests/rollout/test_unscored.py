"""Unscored is not wrong: 3% of a batch cannot relabel the other 97% as wrong.

The attack: sixteen slow answers at the start of a 512-answer step tripped the circuit breaker at
training defaults; every unscored answer was charged "breaker" and became acc = reward = 0, so 0 of
496 correct answers were scored correct, and those zeros entered advantages and the selector.
Now the breaker is per prompt, and what stays unscored is masked out, never counted wrong.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from rollwise import train
from rollwise.allocate import FixedAllocator
from rollwise.rollout.evaluate import evaluate
from rollwise.select.filters import DynamicSampling, NoFilter
from rollwise.data.pool import PoolItem
from rollwise.rollout.collect import Group
from rollwise.select.mopps import MoPPSSelector
from rollwise.verify.base import Score
from rollwise.verify.guard import GuardedVerifier
from rollwise.track import Timer
from tests.support.fakes import FakeCodec, PatternEngine, collect, context
from tests.support.sandbox import ExecVerifier

SPIN = "while True:\n    pass"


def test_a_few_slow_prompts_cannot_relabel_the_batch():
    """512 answers of 64 prompts; the first two prompts' 16 answers spin. Training defaults for the breaker."""
    items = [PoolItem(p, "q", "reference") for p in range(64) for _ in range(8)]
    answers = [SPIN] * 16 + ["reference"] * 496
    with GuardedVerifier(ExecVerifier(), workers=1, timeout=1.0) as guard:  # long enough for any honest answer
        scores = guard.score_batch(answers, items)
        counts = guard.pop_counts()
    assert all(s.acc and s.scored for s in scores[16:]), [s for s in scores[16:] if not s.acc][:3]
    assert all(not s.acc and not s.scored for s in scores[:16])
    assert counts["breaker_tripped"] > 0 and counts["timeouts"] <= 8  # two prompts, a few timeouts each


class PartlyUnscored:
    """Right answers of prompts with id % 3 == 1 come back unscored (breaker); mixed prompts' (id % 3 == 2)
    first sample times out. Everything else is scored exactly."""

    def score_batch(self, answers, items):
        out, seen = [], {}
        for a, it in zip(answers, items):
            k = seen[it.id] = seen.get(it.id, -1) + 1
            if it.id % 3 == 1:
                out.append(Score(False, 0.0, "breaker"))
            elif it.id % 3 == 2 and k == 0:
                out.append(Score(False, 0.0, "timeout"))
            else:
                out.append(Score(a == str(it.id), float(a == str(it.id))))
        return out

    def pop_counts(self):
        return {}


def test_unscored_samples_are_masked_from_observations_and_the_filter():
    ctx = context(30)
    ctx.verifier = PartlyUnscored()
    selector = MoPPSSelector(30)
    before_a, before_b = selector.a.copy(), selector.b.copy()
    got = collect(ctx, selector, NoFilter(), FixedAllocator(4), 30, 4, 1, np.random.default_rng(0), Timer())
    by_id = {g.index: g for g in got.rolled_out}
    assert got.unscored == 10 * 4 + 10  # every sample of ten prompts, one sample of ten others
    for i, g in by_id.items():
        if i % 3 == 1:  # all right, all unscored: not observed at all (not driven towards "hard")
            assert g.trials == 0 and selector.a[i] == before_a[i] and selector.b[i] == before_b[i]
        elif i % 3 == 2:  # pattern 1 0 1 0, first sample unscored: 1 success in 3 trials
            assert (g.successes, g.trials) == (1.0, 3)
            assert selector.a[i] - before_a[i] == pytest.approx(1.0)
            assert selector.b[i] - before_b[i] == pytest.approx(2.0)
    dynamic = collect(context(30), MoPPSSelector(30), DynamicSampling(1), FixedAllocator(4), 30, 4, 1,
                      np.random.default_rng(0), Timer())
    ctx2 = context(30)
    ctx2.verifier = PartlyUnscored()
    masked = collect(ctx2, MoPPSSelector(30), DynamicSampling(1), FixedAllocator(4), 30, 4, 1,
                     np.random.default_rng(0), Timer())
    assert {g.index for g in masked.kept} == {g.index for g in dynamic.kept}  # 0 1 0 still mixed after masking


def test_the_update_sees_scored_samples_only(monkeypatch):
    """GRPO statistics, the loss rows and the token-mean denominator leave the unscored samples out."""
    captured = {}
    monkeypatch.setattr(train, "build_batch", lambda samples, adv, pad: captured.update(samples=samples, adv=adv))
    monkeypatch.setattr(train, "update_policy", lambda *a, **k: {"loss": 0.0})
    run = SimpleNamespace(cfg=SimpleNamespace(algo="grpo", adv_eps=0.0, nonfinite="skip"),
                          ctx=SimpleNamespace(codec=FakeCodec()), policy=SimpleNamespace(model=None), optimizer=None,
                          scheduler=None, settings=None, reference=None, critic=None)
    right = np.array([1.0, 0.0, 0.0, 0.0])
    group = Group(0, ["right", "wrong", "unscored-1", "unscored-2"], right, right.copy(),
                  scored=np.array([True, True, False, False]))
    train._update(run, [group])
    assert captured["samples"] == ["right", "wrong"]
    # mean 0.5 and std 0.707 over the two scored samples; as wrong answers they would make it 0.25 and 0.5
    assert captured["adv"].tolist() == pytest.approx([0.7071, -0.7071], abs=1e-4)


class Evaluating:
    """Held-out scores: item 0 always right, item 1 always timing out."""

    def score_batch(self, answers, items):
        return [Score(True, 1.0) if it.id == 0 else Score(False, 0.0, "timeout") for it in items]


def test_evaluation_leaves_unscored_answers_out():
    items = [PoolItem(0, "q0", "0"), PoolItem(1, "q1", "1")]
    result = evaluate(PatternEngine(), FakeCodec(), Evaluating(), items, temperature=1.0, top_p=1.0,
                      max_new_tokens=2, samples=4, seed=0)
    assert result["eval_greedy_acc"] == 1.0 and result["eval_temp_acc"] == 1.0 and result["eval_unscored"] == 5


def test_gvm_survives_a_prompt_whose_pre_samples_all_went_unscored():
    """Without an estimate GVM refused to allocate: a few timeouts would have stopped the run."""
    from rollwise.allocate import GVMAllocator

    allocator = GVMAllocator(4, presamples=2)
    ids = np.arange(4)
    assert allocator.needs_estimate(ids, 1).all()
    allocator.observe(ids, np.array([1, 0, 1, 0]), np.array([2, 0, 2, 2]), np.full(4, np.nan))
    counts = allocator.allocate(ids, 8)
    assert counts.sum() == 8 and counts[1] == 0
