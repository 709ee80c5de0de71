"""The engine samples what the loss models: temperature and top-p only, whatever the model's own
generation_config asks for (a checkpoint's repetition_penalty, suppress_tokens, min_new_tokens, ...)."""

import copy

import pytest
import torch

from rollwise.policy import tiny
from rollwise.rollout.engine import GenRequest, HFEngine, SamplingParams, sampling_config

torch.set_num_threads(1)

PROMPT = (2, 3, 4, 12, 5, 6, 15)
REQUESTS = [GenRequest(PROMPT, 6), GenRequest((7, 8, 12, 9, 15), 5)]


@pytest.fixture(scope="module")
def model():
    m = tiny.build_tiny_model(2, 32, 2, seed=3)
    with torch.no_grad():  # a peaked, non-uniform next-token distribution (a fresh init is near uniform)
        m.model.embed_tokens.weight.mul_(3)
    m.eval()
    return m


def meddling(model):
    """A copy whose generation_config switches on processors the loss knows nothing about."""
    other = copy.deepcopy(model)
    g = other.generation_config
    g.repetition_penalty = 10.0
    g.suppress_tokens = [2, 3, 4]
    g.begin_suppress_tokens = [5]
    g.bad_words_ids = [[6]]
    g.min_new_tokens = 5
    g.no_repeat_ngram_size = 1
    g.top_k = 2
    return other


def forbidden_by_meddling(completion: list[int]) -> bool:
    """Whether the meddling config could not have produced this completion (suppressed, banned or
    repeated tokens: no_repeat_ngram_size=1), i.e. whether agreeing with it means anything."""
    return bool(set(completion) & {2, 3, 4, 6}) or len(set(completion)) < len(completion)


def sample(model, params, seed=0):
    torch.manual_seed(seed)
    return [[s.completion_ids for s in group] for group in HFEngine(model, 1, 0).generate(REQUESTS, params)]


def test_the_meddling_config_changes_plain_generate(model):
    """Control: left to itself, generate applies those processors (so the next tests can fail)."""
    ids = torch.tensor([PROMPT] * 8)
    torch.manual_seed(0)
    plain = model.generate(ids, do_sample=True, max_new_tokens=6, top_k=0)
    torch.manual_seed(0)
    meddled = meddling(model).generate(ids, do_sample=True, max_new_tokens=6, top_k=0)
    assert not torch.equal(plain, meddled)
    assert not set(meddled[:, len(PROMPT):].flatten().tolist()) & {2, 3, 4, 6}  # suppressed and banned


@pytest.mark.parametrize("params", [SamplingParams(temperature=0.8, max_new_tokens=6),
                                    SamplingParams(temperature=1.3, top_p=0.9, max_new_tokens=6),
                                    SamplingParams(max_new_tokens=6, greedy=True)])
def test_model_generation_config_does_not_change_samples(model, params):
    expected = sample(model, params)
    assert sample(meddling(model), params) == expected
    assert any(forbidden_by_meddling(ids) for group in expected for ids in group)


def test_lora_model_generation_config_is_set_aside_too(model):
    from rollwise.policy.models import apply_lora

    params = SamplingParams(temperature=1.0, max_new_tokens=6)
    plain, meddled = apply_lora(copy.deepcopy(model), 2, 4), apply_lora(meddling(model), 2, 4)
    assert sample(meddled, params) == sample(plain, params) == sample(model, params)


def test_model_generation_config_is_restored(model):
    other = meddling(model)
    before = other.generation_config
    sample(other, SamplingParams(max_new_tokens=3))
    assert other.generation_config is before and before.repetition_penalty == 10.0


def test_first_token_frequencies_match_the_tempered_softmax(model):
    """What the loss assumes (full softmax at the temperature) is what the engine draws, with the
    model asking for top_k=2 and a repetition penalty: total variation under 0.03 on 6,000 draws."""
    temperature, n = 0.7, 6000
    with torch.no_grad():
        logits = model(torch.tensor([PROMPT])).logits[0, -1]
    expected = torch.softmax(logits / temperature, dim=-1)
    assert expected.max() < 0.9 and (expected > 0.02).sum() >= 3  # a distribution worth testing
    torch.manual_seed(1)
    out = HFEngine(meddling(model), 1, 0, batch_size=2000).generate(
        [GenRequest(PROMPT, n)], SamplingParams(temperature=temperature, max_new_tokens=1))
    first = torch.tensor([s.completion_ids[0] for s in out[0]])
    observed = torch.bincount(first, minlength=len(expected)).float() / n
    assert 0.5 * (observed - expected).abs().sum() < 0.03


def test_sampling_runs_in_eval_mode_and_restores_train_mode(model):
    seen = []
    other = copy.deepcopy(model)
    handle = other.model.layers[0].register_forward_hook(lambda mod, inp, out: seen.append(mod.training))
    other.train()
    sample(other, SamplingParams(max_new_tokens=2))
    handle.remove()
    assert seen and not any(seen) and other.training


def test_sampling_config_leaves_only_temperature_and_top_p():
    sampled = sampling_config(SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=9), eos_token_id=1,
                              pad_token_id=0)
    assert (sampled.do_sample, sampled.temperature, sampled.top_p, sampled.top_k) == (True, 0.7, 0.95, 0)
    assert (sampled.repetition_penalty, sampled.min_new_tokens, sampled.no_repeat_ngram_size) == (1.0, 0, 0)
    assert (sampled.max_new_tokens, sampled.eos_token_id, sampled.pad_token_id) == (9, 1, 0)
    assert sampled.suppress_tokens is None and sampled.min_p is None and sampled.bad_words_ids is None
    assert sampling_config(SamplingParams(greedy=True), 1, 0).do_sample is False


# ------------------------------------------------------------------ per-request limits (RPO suffix budgets)


def test_request_limits_cut_rows_exactly_and_leave_other_rows_alone(model):
    """A row with its own limit gets the first tokens of what it would have drawn without one (same seed),
    and rows without a limit come out exactly as in a batch without limits (the random stream is shared)."""
    params = SamplingParams(max_new_tokens=8)
    plain = [GenRequest(PROMPT, 4, (), None), GenRequest(PROMPT, 4, (7,), None)]
    limited = [GenRequest(PROMPT, 4, (), 3), GenRequest(PROMPT, 4, (7,), None)]
    torch.manual_seed(0)
    a = HFEngine(model, 1, 0).generate(plain, params)
    torch.manual_seed(0)
    b = HFEngine(model, 1, 0).generate(limited, params)
    assert any(len(s.completion_ids) > 3 for s in a[0])  # the limit binds
    for s, t in zip(a[0], b[0]):
        assert len(t.completion_ids) <= 3 and t.completion_ids == s.completion_ids[:3]
        assert t.finished == (s.finished and len(s.completion_ids) <= 3)
    assert [s.completion_ids for s in a[1]] == [t.completion_ids for t in b[1]]


def test_short_limits_end_the_batch_early(model):
    """Rows stop at their own limit: a batch whose rows all have small limits runs only that many steps."""
    calls = []
    handle = model.register_forward_hook(lambda mod, inp, out: calls.append(1))
    try:
        out = HFEngine(model, eos_token_id=99, pad_token_id=0).generate(
            [GenRequest(PROMPT, 3, (), 2), GenRequest(PROMPT, 3, (5,), 3)], SamplingParams(max_new_tokens=20))
    finally:
        handle.remove()
    assert [len(s.completion_ids) for g in out for s in g] == [2, 2, 2, 3, 3, 3]
    assert len(calls) <= 3  # not 20


def test_request_limit_must_be_positive():
    with pytest.raises(ValueError, match="max_new_tokens=0"):
        GenRequest(PROMPT, 2, (), 0)


@pytest.mark.parametrize("requests", [
    REQUESTS,
    [GenRequest(PROMPT, 4, (7, 8), 3), GenRequest((7, 8, 12, 9, 15), 3, (), None), GenRequest(PROMPT, 2, (5,), 6)],
], ids=["whole", "prefixes-limits-sizes"])
def test_shared_prefill_draws_the_same_samples(model, requests):
    """Encoding a request's input once and copying its cache to its n rows changes nothing sampled."""
    params = SamplingParams(max_new_tokens=6)
    out = []
    for share in (False, True):
        torch.manual_seed(5)
        out.append(HFEngine(model, 1, 0, share_prefill=share).generate(requests, params))
    plain, shared = ([[(s.completion_ids, s.finished) for s in g] for g in o] for o in out)
    assert plain == shared and any(len(c) > 1 for g in plain for c, _ in g)


def test_shared_prefill_encodes_each_request_once(model):
    shapes = []
    handle = model.register_forward_pre_hook(lambda mod, args, kwargs: shapes.append(kwargs["input_ids"].shape),
                                             with_kwargs=True)
    try:
        HFEngine(model, 1, 0, share_prefill=True).generate(REQUESTS, SamplingParams(max_new_tokens=2))
    finally:
        handle.remove()
    assert shapes[0] == (2, len(PROMPT) - 1)  # two requests, their inputs but the last token
    assert shapes[1][0] == 11 and shapes[1][1] == 1  # then the 6 + 5 rows, one token at a time
