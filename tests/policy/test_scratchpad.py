"""The scratchpad codec (running partial sums, only the last one scored) and the tiny model's warm-up."""

import pytest
import torch

from rollwise.config import RunConfig
from rollwise.data.pool import PoolItem
from rollwise.policy.scratchpad import ScratchpadCodec, ScratchpadLayout
from rollwise.verify.verifiers import build_verifier
from rollwise.policy.tiny import EOS, VOCAB, build_tiny_model
from rollwise.policy.tiny_codecs import make_codec
from rollwise.policy.warmup import WarmupMissedTarget, copy_items, supervised_batch, warm_up

torch.set_num_threads(1)  # one thread is fastest for these tiny models (docs/results.md)


def item(expression, answer, id=5):
    return PoolItem(id=id, prompt=f"Calculate {expression}.", answer=answer, metadata={"expression": expression})


def shown(ids):
    return "".join("_" if i == 0 else "$" if i == EOS else VOCAB[i] for i in ids)


CODEC = ScratchpadCodec(ScratchpadLayout.for_task({"max_terms": 4, "max_digits": 2}))


def test_layout_has_one_slot_per_term_and_the_width_of_the_largest_sum():
    assert CODEC.layout == ScratchpadLayout(slots=4, width=3)  # 4 x 100 = 400
    assert ScratchpadLayout.for_task({"max_terms": 10, "max_digits": 2}) == ScratchpadLayout(10, 4)
    assert ScratchpadLayout.for_task({"max_terms": 7, "max_digits": 1}) == ScratchpadLayout(7, 2)
    assert CODEC.max_new_tokens == 16 and CODEC.layout.prompt_length == 17


def test_prompt_slots_and_running_sums():
    it = item("47 + 45 + 99", "191")
    assert shown(CODEC.prompt_ids(it)) == "740+540+990+____="
    assert shown(CODEC.supervised_target(it)) == "740,290,191$"
    # Term i and sum s_i are exactly one prompt length apart, whatever the number of terms.
    seq = shown(CODEC.prompt_ids(it) + CODEC.supervised_target(it))
    assert [seq[4 * i: 4 * i + 3] for i in range(3)] == ["740", "540", "990"]  # terms 47, 45, 99
    assert [seq[17 + 4 * i: 17 + 4 * i + 3] for i in range(3)] == ["740", "290", "191"]  # sums 47, 92, 191
    assert len(CODEC.prompt_ids(item("1 + 2", "3"))) == 17


def test_round_trip_with_numbers_that_need_an_extra_digit():
    for expression, answer in [("100 + 100 + 100 + 100", "400"), ("100 + 5", "105"), ("0 + 0", "0"), ("9 + 91", "100")]:
        it = item(expression, answer)
        completion = CODEC.decode(CODEC.supervised_target(it))
        assert CODEC.answer(completion) == answer
    assert shown(CODEC.prompt_ids(item("100 + 5", "105"))) == "001+500+________="
    assert CODEC.decode(CODEC.supervised_target(item("100 + 5", "105"))) == "001,501"


def test_unreadable_or_too_wide_prompts_are_clear_errors():
    with pytest.raises(ValueError, match="prompt id 5: the built-in tiny model reads arithmetic expressions"):
        CODEC.terms(item("7 - 2", "5"))
    with pytest.raises(ValueError, match="5 terms, but the scratchpad layout has 4 slots"):
        CODEC.terms(item("1 + 1 + 1 + 1 + 1", "5"))
    with pytest.raises(ValueError, match="number 1000 has more than the layout's 3 digits"):
        CODEC.terms(item("1000 + 1", "1001"))


def test_the_verifier_reads_only_the_final_answer():
    verifier = build_verifier("basic_arithmetic")
    it = item("47 + 45 + 99", "191")

    def score(completion):
        return verifier.score(CODEC.answer(completion), it).acc

    assert score("740,290,191")          # all right
    assert score("740,999,191")          # a wrong intermediate, right final answer: correct
    assert not score("740,290,291")      # right intermediates, wrong final answer: wrong
    assert not score("740,290,")         # an empty last field
    assert not score("740,290")          # stopped one step early: the last field is s2
    assert CODEC.answer("") is None


def test_warm_up_batches_mask_the_prompt_and_copy_items_cover_one_hundred():
    ids, attn, mask = supervised_batch(CODEC, [item("47 + 45", "92"), item("1 + 2 + 3", "6")])
    assert ids.shape == (2, 17 + 12) and mask[0].sum() == 8 and mask[1].sum() == 12
    assert mask[:, :17].sum() == 0 and attn[0, -1] == 0 and attn[1, -1] == 1
    copies = copy_items({"max_digits": 2}, 2000, seed=0)
    numbers = {int(c.answer) for c in copies}
    assert min(numbers) == 0 and max(numbers) == 100
    assert shown(CODEC.supervised_target(copies[0])).count(",") == 0


STEPS = 400


@pytest.mark.slow
def test_a_short_warm_up_reaches_nonzero_accuracy():
    # One-digit sums of 2 terms, a 2-layer model with one-term copy items: it stops at its target
    # (a random model scores 0: it would have to write `$,$$` exactly) well before its step budget.
    options = {"max_terms": 2, "max_digits": 1}
    codec = make_codec("scratchpad", options)
    gen = torch.Generator().manual_seed(1)
    pairs = torch.randint(0, 11, (580, 2), generator=gen).tolist()
    items = [item(f"{a} + {b}", str(a + b), id=i) for i, (a, b) in enumerate(pairs)]
    model = build_tiny_model(2, 64, 4, seed=0, max_positions=codec.max_positions)
    report = warm_up(model, codec, items[:500], items[500:], steps=STEPS, batch=32, lr=3e-3, seed=0, eval_every=20,
                     stop_at=0.2, copies=copy_items(options, 200, seed=2), copy_fraction=0.1, log=lambda m: None)
    assert report.best_greedy_acc >= 0.2, report.history
    assert report.steps < STEPS and report.history[-1]["greedy_acc"] == report.best_greedy_acc


@pytest.mark.slow
def test_a_warm_up_that_misses_its_target_stops_the_run_with_what_to_change(tmp_path):
    from rollwise.policy.models import ensure_tiny

    cfg = RunConfig.from_sources(preset="scratchpad", overrides=dict(
        cache_dir=str(tmp_path), warmup_steps=2, warmup_target_acc=0.9, warmup_items=200, train_size=40, eval_size=10,
        tiny_layers=1, tiny_hidden=16, tiny_heads=2, batch_prompts=4))
    with pytest.raises(WarmupMissedTarget, match=r"below its target warmup_target_acc=0.9.*--warmup-steps, now 2"):
        ensure_tiny(cfg, log=lambda m: None)
    assert not list(tmp_path.glob("tiny-*/rollwise.json"))  # a missed warm-up is never cached
    assert issubclass(WarmupMissedTarget, ValueError)  # the command line prints it as one clear line
