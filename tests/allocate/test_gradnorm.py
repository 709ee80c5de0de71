"""G_i's estimate for GVM (`rollwise.allocate.gradnorm`): batched per-sample embedding-gradient norms against
per-sample autograd, tied embeddings, the mean over correct samples, and the tokens it measures under RPO."""

import numpy as np
import pytest
import torch

from rollwise.algos.update import build_batch
from rollwise.allocate.gradnorm import mean_over_correct, sequence_embedding_grad_norms
from rollwise.policy.tiny import PAD, tiny_model_config
from rollwise.rollout.engine import Sample


def _untied_model(**config):
    from transformers import LlamaForCausalLM

    cfg = tiny_model_config(layers=2, hidden=32, heads=2)
    cfg.tie_word_embeddings = False
    for key, value in config.items():
        setattr(cfg, key, value)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg)


def _samples():
    gen = torch.Generator().manual_seed(5)
    lengths = [(4, 0, 3), (6, 2, 5), (3, 0, 1), (5, 1, 7), (4, 3, 2)]  # prompt, prefix, completion
    return [Sample(i, *(tuple(torch.randint(2, 17, (n,), generator=gen).tolist()) for n in (p, q)),
                   torch.randint(2, 17, (c,), generator=gen).tolist(), True)
            for i, (p, q, c) in enumerate(lengths)]


def _direct_norm(model, sample, temperature):
    """One sequence alone, unpadded: autograd w.r.t. the embedding matrix."""
    batch = build_batch([sample], np.zeros(1), PAD)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1] / temperature
    logp = torch.log_softmax(logits, -1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    (grad,) = torch.autograd.grad((logp * batch.loss_mask).sum(), model.model.embed_tokens.weight)
    return float(grad.norm())


def test_batched_embedding_grad_norms_equal_per_sample_autograd():
    torch.set_num_threads(1)
    model = _untied_model(attention_dropout=0.5)  # dropout would change the result if it were on
    samples = _samples()
    model.eval()
    expected = [_direct_norm(model, s, 0.7) for s in samples]
    model.train()
    batch = build_batch(samples, np.zeros(len(samples)), PAD)
    got = sequence_embedding_grad_norms(model, batch, temperature=0.7, micro_batch=2)
    assert got == pytest.approx(expected, rel=1e-4)
    assert len(set(np.round(expected, 6))) == len(samples)  # distinct values: rows were not mixed up
    assert sequence_embedding_grad_norms(model, batch, 0.7, micro_batch=5) == pytest.approx(got, rel=1e-5)
    assert model.training  # mode restored
    assert all(p.grad is None and p.requires_grad for p in model.parameters())  # nothing left behind


def test_tied_embeddings_count_only_the_input_use():
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    tied = LlamaForCausalLM(tiny_model_config(layers=1, hidden=32, heads=2)).eval()
    untied = _untied_model(num_hidden_layers=1).eval()
    untied.load_state_dict(tied.state_dict(), strict=False)  # same weights, lm_head a separate copy
    untied.lm_head.weight.data.copy_(tied.model.embed_tokens.weight.data)
    sample = _samples()[1]
    batch = build_batch([sample], np.zeros(1), PAD)
    got = sequence_embedding_grad_norms(tied, batch)[0]
    assert got == pytest.approx(_direct_norm(untied, sample, 1.0), rel=1e-4)  # input use only
    assert got < 0.99 * _direct_norm(tied, sample, 1.0)  # the shared parameter's gradient includes lm_head


def test_mean_over_correct():
    out = mean_over_correct(np.array([1.0, 3.0, 5.0, 7.0, 2.0]), np.array([0, 0, 1, 2, 2]),
                            np.array([1, 1, 0, 0, 1]), 4)
    assert out[[0, 2]].tolist() == [2.0, 2.0] and np.isnan(out[[1, 3]]).all()


def test_rows_without_loss_tokens_get_zero():
    model = _untied_model(num_hidden_layers=1)
    samples = _samples()[:2] + [Sample(9, (3, 4, 5), (), [], False)]  # nothing generated: empty loss mask
    norms = sequence_embedding_grad_norms(model, build_batch(samples, np.zeros(3), PAD), micro_batch=3)
    assert norms[2] == 0.0 and (norms[:2] > 0).all()


def test_suffix_only_measures_the_generated_tokens():
    from rollwise.allocate.gradnorm import suffix_only

    samples = [Sample(0, (5, 6), (7, 8, 9), [10, 1], True), Sample(0, (5, 6), (), [10, 11, 1], True)]
    batch = build_batch(samples, np.zeros(2), PAD)
    masked = suffix_only(batch, samples)
    assert batch.loss_mask.sum(1).tolist() == [5.0, 3.0] and masked.loss_mask.sum(1).tolist() == [2.0, 3.0]
    assert masked.loss_mask[0].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]  # positions 4, 5 predict 10 and EOS
