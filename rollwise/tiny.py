"""The built-in tiny policy: a 0.6M-parameter Llama that reads arithmetic and answers in reversed digits.

It exists so that `rollwise train` shows real RL learning on two CPU cores in minutes. It is made by
a short supervised warm-up on the chosen task with rollwise's own code (`warm_up`), then saved as an
ordinary Hugging Face model directory plus `rollwise.json` (its codec), cached by a hash of every
setting that shapes it, so later runs and all runs of a comparison start from the same policy.

Deliberate choices (CALIBRATION.md):
- a 16-symbol character vocabulary; the prompt is the expression without spaces then `=`;
- the answer is written least-significant digit first, which makes carries learnable by a tiny model;
- the warm-up sees fewer terms than the RL pool, so long sums start mostly unsolved and RL has a wide
  band of partly solved prompts to sharpen, and it keeps the checkpoint with the best greedy accuracy
  on a validation set (constant-lr checkpoints jump between evaluations).
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rollwise.pool import PoolItem

VOCAB = ["<pad>", "<eos>", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "+", "-", "*", "="]
PAD, EOS = 0, 1
PROMPT_WIDTH = 20  # 6 two-digit terms and their 5 signs and `=` fit
CODEC_FILE = "rollwise.json"


class TinyCodec:
    """Character codec of the tiny model: `4+1+7=` in, `21<eos>` (12 reversed) out."""

    eos_token_id = EOS
    pad_token_id = PAD

    def __init__(self, number_width: int = 2) -> None:
        self.char_to_id = {c: i for i, c in enumerate(VOCAB) if len(c) == 1}
        self.number_width = number_width

    def expression(self, item: PoolItem) -> str:
        text = str(item.metadata.get("expression", item.prompt)).replace(" ", "").rstrip("=")
        bad = sorted({c for c in text if c not in self.char_to_id or c == "="})
        if bad or not text:
            raise ValueError(
                f"prompt id {item.id}: the built-in tiny model reads arithmetic expressions (digits, + - *), "
                f"found {bad or 'nothing'}; use a Hugging Face model (--model DIR) for this task"
            )
        # Numbers zero-padded to a fixed width put every units digit at a fixed distance from `=`,
        # which is what lets a 0.6M-parameter model learn column addition in a few minutes.
        return re.sub(r"\d+", lambda m: m.group().zfill(self.number_width), text)

    def prompt_ids(self, item: PoolItem) -> list[int]:
        # Left-padded to a fixed width with a visible pad symbol: the digits of every expression sit
        # at the same distance from `=`, which a tiny model finds far easier than variable offsets.
        ids = [self.char_to_id[c] for c in self.expression(item) + "="]
        return [PAD] * max(0, PROMPT_WIDTH - len(ids)) + ids

    def target_ids(self, answer: str) -> list[int]:
        return [self.char_to_id[c] for c in answer[::-1]] + [EOS]

    def decode(self, ids: list[int]) -> str:
        return "".join(VOCAB[i] for i in ids if i not in (PAD, EOS) and 0 <= i < len(VOCAB))

    def answer(self, completion: str) -> str | None:
        return completion[::-1] if completion else None


def tiny_model_config(layers: int, hidden: int, heads: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(VOCAB), hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=64,
        tie_word_embeddings=True, bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD,
    )


def build_tiny_model(layers: int, hidden: int, heads: int, seed: int = 0):
    """A randomly initialised tiny Llama (tests use it directly, without warm-up)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_model_config(layers, hidden, heads))
    model.generation_config.pad_token_id = PAD
    model.generation_config.eos_token_id = EOS
    return model


# ---------------------------------------------------------------------------- warm-up


@dataclass
class WarmupReport:
    steps: int
    best_step: int
    best_greedy_acc: float
    seconds: float
    history: list


def _supervised_batch(codec: TinyCodec, items: list[PoolItem]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded prompt+answer sequences with a loss mask on the answer tokens only."""
    seqs, masks = [], []
    for it in items:
        p, t = codec.prompt_ids(it), codec.target_ids(it.answer)
        seqs.append(p + t)
        masks.append([0] * len(p) + [1] * len(t))
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), PAD, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)  # prompt pads are attended; tail pads are not
    loss_mask = torch.zeros((len(seqs), width), dtype=torch.float32)
    for i, (s, m) in enumerate(zip(seqs, masks)):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
        loss_mask[i, : len(m)] = torch.tensor(m, dtype=torch.float32)
    return ids, attn, loss_mask


def supervised_loss(model, codec: TinyCodec, items: list[PoolItem]) -> torch.Tensor:
    ids, attn, loss_mask = _supervised_batch(codec, items)
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
    mask = loss_mask[:, 1:].reshape(-1)
    return (nll * mask).sum() / mask.sum()


def warm_up(model, train_items: list[PoolItem], val_items: list[PoolItem], steps: int, batch: int, lr: float,
            seed: int, eval_every: int = 100, log=print) -> WarmupReport:
    """Supervised warm-up; keeps the parameters with the best greedy validation accuracy."""
    from rollwise.evaluate import greedy_accuracy

    codec = TinyCodec()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100))
    best = (-1.0, 0, None)
    history = []
    start = time.perf_counter()
    model.train()
    for step in range(1, steps + 1):
        idx = torch.randint(len(train_items), (batch,), generator=gen).tolist()
        loss = supervised_loss(model, codec, [train_items[i] for i in idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % eval_every == 0 or step == steps:
            acc = greedy_accuracy(model, codec, val_items)
            history.append({"step": step, "loss": loss.item(), "greedy_acc": acc})
            log(f"warm-up step {step}/{steps}: loss {loss.item():.3f}, validation greedy accuracy {acc:.3f}")
            if acc > best[0]:
                best = (acc, step, {k: v.detach().clone() for k, v in model.state_dict().items()})
            model.train()
    if best[2] is not None:
        model.load_state_dict(best[2])
    model.eval()
    return WarmupReport(steps, best[1], best[0], time.perf_counter() - start, history)


def save_codec_info(directory: Path, info: dict) -> None:
    (directory / CODEC_FILE).write_text(json.dumps({"codec": "tiny", "number_width": 2, **info}, indent=1))


def load_codec(directory: Path) -> TinyCodec:
    info = json.loads((Path(directory) / CODEC_FILE).read_text())
    return TinyCodec(number_width=int(info.get("number_width", 2)))


def is_tiny_dir(directory: Path) -> bool:
    path = Path(directory) / CODEC_FILE
    return path.is_file() and json.loads(path.read_text()).get("codec") == "tiny"


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def expected_steps_seconds(steps: int) -> float:
    """Rough warm-up time on this class of machine (0.18 s a step, CALIBRATION.md), for messages."""
    return math.ceil(steps * 0.18)
