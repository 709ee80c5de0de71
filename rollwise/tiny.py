"""The built-in tiny policy: a 0.6M-parameter Llama that reads sums and answers in reversed digits.

It exists so that `rollwise train` shows real RL learning on two CPU cores in minutes. It is made by
a short supervised warm-up on the chosen task with rollwise's own code (`warm_up`), then saved as an
ordinary Hugging Face model directory plus `rollwise.json` (its codec), cached by a hash of every
setting that shapes it, so later runs and all runs of a comparison start from the same policy.

Deliberate choices (measured on two cores; see CALIBRATION.md and the README):
- a 16-symbol character vocabulary; every number of the prompt is zero-padded to a fixed width and
  written least-significant digit first, and so is the answer (zero-padded to a fixed width). Digit
  column j of every term then sits at a fixed distance from answer digit j, which a 3-layer model
  learns in about a thousand steps; with natural digit order it had learned nothing after 1,500;
- the model warms up on 2-term sums only and stops as soon as it answers half of them (greedy), so
  they start partly solved; it has never seen 3 terms, so the default RL pool (2-3 terms) holds a
  learnable half and a hopeless half, which is the waste prompt selection exists to avoid.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rollwise.pool import PoolItem

VOCAB = ["<pad>", "<eos>", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "+", "-", "*", "="]
PAD, EOS = 0, 1
CODEC_FILE = "rollwise.json"


@dataclass(frozen=True)
class TinyLayout:
    """Widths of the tiny model's fixed-layout prompts and answers, derived from the task options."""

    number_width: int = 2
    answer_width: int = 3
    prompt_width: int = 12
    reverse_numbers: bool = True

    @classmethod
    def for_task(cls, options: dict) -> "TinyLayout":
        digits, terms = int(options.get("max_digits", 2)), int(options.get("max_terms", 3))
        largest = terms * (10**digits - 1)
        return cls(number_width=digits, answer_width=len(str(largest)), prompt_width=terms * (digits + 1))


class TinyCodec:
    """Character codec of the tiny model: `4+17` in as `40+71=`, 21 out as `120<eos>`."""

    eos_token_id = EOS
    pad_token_id = PAD

    def __init__(self, layout: TinyLayout = TinyLayout()) -> None:
        self.char_to_id = {c: i for i, c in enumerate(VOCAB) if len(c) == 1}
        self.layout = layout

    def expression(self, item: PoolItem) -> str:
        text = str(item.metadata.get("expression", item.prompt)).replace(" ", "").rstrip("=")
        bad = sorted({c for c in text if c not in self.char_to_id or c == "="})
        if bad or not text:
            raise ValueError(
                f"prompt id {item.id}: the built-in tiny model reads arithmetic expressions (digits, + - *), "
                f"found {bad or 'nothing'}; use a Hugging Face model (--model DIR) for this task"
            )
        width, reverse = self.layout.number_width, self.layout.reverse_numbers
        return re.sub(r"\d+", lambda m: m.group().zfill(width)[:: -1 if reverse else 1], text)

    def prompt_ids(self, item: PoolItem) -> list[int]:
        # Left-padded to a fixed width with a visible pad symbol, so that every digit sits at the
        # same distance from `=` whatever the number of terms.
        ids = [self.char_to_id[c] for c in self.expression(item) + "="]
        return [PAD] * max(0, self.layout.prompt_width + 1 - len(ids)) + ids

    def target_ids(self, answer: str) -> list[int]:
        digits = answer.lstrip("-")
        sign = "-" if answer.startswith("-") else ""
        return [self.char_to_id[c] for c in digits.zfill(self.layout.answer_width)[::-1] + sign] + [EOS]

    def decode(self, ids: list[int]) -> str:
        return "".join(VOCAB[i] for i in ids if i not in (PAD, EOS) and 0 <= i < len(VOCAB))

    def answer(self, completion: str) -> str | None:
        """Reverse the digits back; leading zeros of the fixed width go (`120` -> `21`)."""
        if not completion:
            return None
        text = completion[::-1]
        sign = "-" if text.startswith("-") else ""
        digits = text[len(sign):]
        return sign + (digits.lstrip("0") or "0") if digits.isdigit() else text

    @property
    def max_new_tokens(self) -> int:
        return self.layout.answer_width + 2  # digits, a possible sign, EOS


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


def warm_up(model, codec: TinyCodec, train_items: list[PoolItem], val_items: list[PoolItem], steps: int, batch: int,
            lr: float, seed: int, eval_every: int = 25, stop_at: float = 0.0, log=print) -> WarmupReport:
    """Supervised warm-up to the first validation greedy accuracy >= stop_at (when > 0), else to the
    end; keeps the checkpoint it stopped at, or the best one when the target was never reached.

    Stopping at a target rather than a step count is what makes the starting policy half-trained on
    purpose: these models learn sums in a sudden jump, and a fixed step count lands before or after it.
    """
    from rollwise.evaluate import greedy_accuracy

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100))
    best = (-1.0, 0, None)
    history = []
    start = time.perf_counter()
    model.train()
    step = 0  # steps taken: the loop may stop early, or not run at all (steps=0: a random model)
    for step in range(1, steps + 1):
        idx = torch.randint(len(train_items), (batch,), generator=gen).tolist()
        loss = supervised_loss(model, codec, [train_items[i] for i in idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % eval_every == 0 or step == steps:
            acc = greedy_accuracy(model, codec, val_items, codec.max_new_tokens)
            history.append({"step": step, "loss": loss.item(), "greedy_acc": acc})
            log(f"warm-up step {step}/{steps}: loss {loss.item():.3f}, validation greedy accuracy {acc:.3f}")
            if acc > best[0]:
                best = (acc, step, {k: v.detach().clone() for k, v in model.state_dict().items()})
            if 0 < stop_at <= acc:
                break
            model.train()
    if best[2] is not None:
        model.load_state_dict(best[2])
    model.eval()
    return WarmupReport(step, best[1], best[0], time.perf_counter() - start, history)


def save_codec_info(directory: Path, codec: TinyCodec, info: dict) -> None:
    (directory / CODEC_FILE).write_text(json.dumps({"codec": "tiny", "layout": asdict(codec.layout), **info}, indent=1))


def load_codec(directory: Path) -> TinyCodec:
    info = json.loads((Path(directory) / CODEC_FILE).read_text())
    return TinyCodec(TinyLayout(**info["layout"]))


def is_tiny_dir(directory: Path) -> bool:
    path = Path(directory) / CODEC_FILE
    return path.is_file() and json.loads(path.read_text()).get("codec") == "tiny"


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def expected_seconds(steps: int, batch: int) -> float:
    """Rough warm-up time on two cores (about 0.15 s a step of 64 sequences, one thread), for messages."""
    return math.ceil(steps * batch * 0.0025)
