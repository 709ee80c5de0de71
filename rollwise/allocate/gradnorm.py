"""G_i for GVM: per-sequence norms of the log-likelihood gradient with respect to the token embeddings.

For each row j of a batch, the norm of d(sum of log p of its loss-masked tokens) / d(E), E the input
token-embedding matrix, at the sampling temperature. It is the cheap, embedding-only estimate of the
published GVM code, made in one forward and one backward pass per micro-batch instead of one per sample:

- the embedding module's output is swapped (forward hook) for a leaf tensor that requires grad;
- rows do not interact inside a causal LM, so the gradient of the batch's summed log-likelihood with
  respect to row j's input embeddings is row j's own gradient;
- d/dE for row j is the scatter-add of its per-position gradients into the rows of its token ids
  (times the module's `embed_scale` where it has one, as Gemma 3's scaled embedding does); its
  Frobenius norm is sqrt(sum over distinct tokens v of ||sum of the gradients at positions holding v||^2),
  computed without ever forming a vocabulary-sized matrix.

Tied input/output embeddings: only the input use of the matrix is counted, never its use as the
output layer. That is what the published estimate measures on untied models (it differentiates the
`embed_tokens` parameter); on a tied model that parameter is also the output layer, so the published
computation would include the output use too. Rollwise keeps the input-only definition for both.

The pass runs in eval mode (no dropout; the mode is restored after), and leaves every parameter's
`.grad` as it was: gradients are taken with `torch.autograd.grad` with respect to the leaf alone,
and parameters are frozen for the duration so that no weight-gradient work is done or stored.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import torch

from rollwise.algos.update import Batch, token_logprobs


def sequence_embedding_grad_norms(model, batch: Batch, temperature: float = 1.0, micro_batch: int = 16) -> np.ndarray:
    """Per-row L2 norm of d(sum of masked token log-probs) / d(input embedding matrix), float64 (N,).

    Rows whose loss mask is empty get 0.
    """
    if micro_batch < 1:
        raise ValueError(f"micro_batch must be at least 1, got {micro_batch}")
    embedding = model.get_input_embeddings()
    scale = float(getattr(embedding, "embed_scale", 1.0))
    vocab = embedding.weight.shape[0]
    # Rows of similar length share a micro-batch, cut to its own longest row: less padding computed.
    order = torch.argsort(batch.attention_mask.sum(1), stable=True)
    norms = torch.zeros(len(batch), dtype=torch.float64)
    with _frozen_eval(model):
        for rows in torch.split(order, micro_batch):
            micro = _trimmed(batch, rows)
            grads = _embedding_output_grads(model, embedding, micro, temperature)
            norms[rows] = scale * _scattered_norms(grads, micro.input_ids, micro.attention_mask, vocab)
    return norms.numpy()


def suffix_only(batch: Batch, samples) -> Batch:
    """The batch with its loss mask on each sample's generated tokens only, never on a prefix (an RPO cached
    prefix or a hint): GVM's G_i is then the gradient of what the update trains, since a prefix shared by a
    group gets no group-relative gradient (docs/allocation.md). Full rollouts have no prefix: unchanged.

    >>> from types import SimpleNamespace as S
    >>> b = Batch(torch.zeros(1, 6, dtype=torch.long), torch.ones(1, 6), torch.ones(1, 5), torch.zeros(1))
    >>> suffix_only(b, [S(prompt_ids=(7, 7), prefix_ids=(4, 4))]).loss_mask.tolist()   # predicts tokens 4, 5
    [[0.0, 0.0, 0.0, 1.0, 1.0]]
    """
    mask = batch.loss_mask.clone()
    for row, s in enumerate(samples):
        mask[row, : len(s.prompt_ids) + len(s.prefix_ids) - 1] = 0.0  # position t predicts token t + 1
    return dataclasses.replace(batch, loss_mask=mask)


def mean_over_correct(norms: np.ndarray, groups: np.ndarray, correct: np.ndarray, num_groups: int) -> np.ndarray:
    """Mean norm per group over its correct rows, NaN where a group has no correct row (the `grad_norms`
    an allocator's `observe` takes).

    >>> mean_over_correct(np.array([1., 3., 5., 7.]), np.array([0, 0, 1, 2]), np.array([1, 1, 0, 1]), 3).tolist()
    [2.0, nan, 7.0]
    """
    norms = np.asarray(norms, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.int64)
    keep = np.asarray(correct).astype(bool)
    total = np.bincount(groups[keep], weights=norms[keep], minlength=num_groups)
    count = np.bincount(groups[keep], minlength=num_groups)
    out = np.full(num_groups, np.nan)
    out[count > 0] = total[count > 0] / count[count > 0]
    return out


def _trimmed(batch: Batch, rows: torch.Tensor) -> Batch:
    """The rows cut after their last real token (padding beyond it changes nothing; left padding stays)."""
    mask = batch.attention_mask[rows]
    positions = torch.arange(1, mask.shape[1] + 1)
    width = max(int((positions * (mask > 0)).max()), 2)
    return Batch(batch.input_ids[rows, :width], batch.attention_mask[rows, :width],
                 batch.loss_mask[rows, : width - 1], batch.advantages[rows])


def _embedding_output_grads(model, embedding, micro: Batch, temperature: float) -> torch.Tensor:
    """d(sum of masked log-probs) / d(embedding module output), shape (rows, T, H)."""
    captured = {}

    def swap_for_leaf(module, inputs, output):
        captured["leaf"] = output.detach().requires_grad_(True)
        return captured["leaf"]

    handle = embedding.register_forward_hook(swap_for_leaf)
    try:
        with torch.enable_grad():
            logp = token_logprobs(model, micro, temperature)
            total = (logp * micro.loss_mask.to(logp.device)).sum()
            (grads,) = torch.autograd.grad(total, captured["leaf"])
    finally:
        handle.remove()
    return grads


def _scattered_norms(grads: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     vocab: int) -> torch.Tensor:
    """Frobenius norm, per row, of the per-position gradients scatter-added into their token rows."""
    rows = grads.shape[0]
    valid = attention_mask.to(grads.device).bool()
    row_index = torch.arange(rows, device=grads.device).unsqueeze(1).expand_as(valid)
    keys = row_index[valid] * vocab + input_ids.to(grads.device)[valid]  # one key per (row, token id)
    distinct, slot = torch.unique(keys, return_inverse=True)
    summed = torch.zeros(distinct.numel(), grads.shape[-1], dtype=torch.float64, device=grads.device)
    summed.index_add_(0, slot, grads[valid].double())
    squares = torch.zeros(rows, dtype=torch.float64, device=grads.device)
    squares.index_add_(0, distinct // vocab, summed.pow(2).sum(-1))
    return squares.sqrt().cpu()


@contextlib.contextmanager
def _frozen_eval(model):
    """Eval mode (no dropout) and no parameter gradients for the duration; both restored after."""
    was_training = model.training
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)
        model.train(was_training)
