"""The built-in tiny model's answer-only codec: fixed layout, reversed digits, answers read back."""

import pytest

from rollwise.data.pool import PoolItem
from rollwise.policy.tiny import VOCAB, TinyCodec, TinyLayout
from rollwise.policy.tiny_codecs import make_codec


def item(expression, answer="0"):
    return PoolItem(id=3, prompt=f"Calculate {expression}.", answer=answer, metadata={"expression": expression})


def shown(ids):
    return "".join(VOCAB[i] if i else "_" for i in ids)


def test_layout_follows_the_task_options():
    # randint(0, 10**d) includes 10**d: two-digit numbers get three digits, 3 x 100 needs 3 answer digits.
    assert TinyLayout.for_task({"max_terms": 3, "max_digits": 2}) == TinyLayout(3, 3, 12, True)
    assert TinyLayout.for_task({"max_terms": 12, "max_digits": 1}) == TinyLayout(2, 3, 36, True)
    assert TinyLayout.for_task({"max_terms": 10, "max_digits": 2}) == TinyLayout(3, 4, 40, True)


def test_prompt_is_left_padded_with_reversed_zero_padded_numbers():
    codec = TinyCodec(TinyLayout.for_task({"max_terms": 3, "max_digits": 2}))
    assert codec.expression(item("4 + 17")) == "400+710"
    ids = codec.prompt_ids(item("4 + 17"))
    assert len(ids) == 13 and shown(ids) == "_____400+710="
    assert len(codec.prompt_ids(item("12 + 34 + 56"))) == 13


def test_one_hundred_keeps_the_fixed_layout():
    # 100 among two-digit numbers (reasoning-gym's randint(0, 100)): three digits like every other number.
    codec = TinyCodec(TinyLayout.for_task({"max_terms": 3, "max_digits": 2}))
    assert shown(codec.prompt_ids(item("100 + 7 + 100"))) == "_001+700+001="
    assert shown(codec.prompt_ids(item("100 + 7"))) == "_____001+700="
    assert shown(codec.prompt_ids(item("99 + 7"))) == "_____990+700="  # the same positions
    assert codec.decode(codec.target_ids("300")) == "003" and codec.answer("003") == "300"


def test_numbers_wider_than_the_layout_are_a_clear_error():
    codec = TinyCodec(TinyLayout.for_task({"max_terms": 3, "max_digits": 2}))
    with pytest.raises(ValueError, match="prompt id 3: number 1000 has more than the layout's 3 digits"):
        codec.prompt_ids(item("1000 + 1"))


def test_answers_are_reversed_fixed_width_and_read_back():
    codec = TinyCodec(TinyLayout(2, 3, 9, True))
    assert codec.decode(codec.target_ids("21")) == "120"
    assert codec.supervised_target(item("10 + 11", "21")) == codec.target_ids("21")
    assert codec.answer("120") == "21" and codec.answer("000") == "0" and codec.answer("") is None
    assert codec.answer("12-") == "-21" and codec.answer("1+") == "+1"  # not a number: left to the verifier
    assert codec.max_new_tokens == 5


def test_unreadable_prompts_are_a_clear_error():
    with pytest.raises(ValueError, match="prompt id 3: the built-in tiny model reads arithmetic"):
        TinyCodec().expression(item("x = 2"))


def test_codec_names_are_checked():
    assert make_codec("answer", {"max_terms": 2}).name == "answer"
    with pytest.raises(ValueError, match="tiny_codec='chain': expected one of answer, scratchpad"):
        make_codec("chain", {})
