"""The built-in tiny model's codec: fixed layout, reversed digits, answers read back."""

import pytest

from rollwise.pool import PoolItem
from rollwise.tiny import VOCAB, TinyCodec, TinyLayout


def item(expression, answer="0"):
    return PoolItem(id=3, prompt=f"Calculate {expression}.", answer=answer, metadata={"expression": expression})


def test_layout_follows_the_task_options():
    assert TinyLayout.for_task({"max_terms": 3, "max_digits": 2}) == TinyLayout(2, 3, 9, True)
    assert TinyLayout.for_task({"max_terms": 12, "max_digits": 1}) == TinyLayout(1, 3, 24, True)


def test_prompt_is_left_padded_with_reversed_zero_padded_numbers():
    codec = TinyCodec(TinyLayout.for_task({"max_terms": 3, "max_digits": 2}))
    assert codec.expression(item("4 + 17")) == "40+71"
    ids = codec.prompt_ids(item("4 + 17"))
    assert len(ids) == 10 and "".join(VOCAB[i] if i else "_" for i in ids) == "____40+71="
    assert len(codec.prompt_ids(item("12 + 34 + 56"))) == 10


def test_answers_are_reversed_fixed_width_and_read_back():
    codec = TinyCodec(TinyLayout(2, 3, 9, True))
    assert codec.decode(codec.target_ids("21")) == "120"
    assert codec.answer("120") == "21" and codec.answer("000") == "0" and codec.answer("") is None
    assert codec.answer("12-") == "-21" and codec.answer("1+") == "+1"  # not a number: left to the verifier
    assert codec.max_new_tokens == 5


def test_unreadable_prompts_are_a_clear_error():
    with pytest.raises(ValueError, match="prompt id 3: the built-in tiny model reads arithmetic"):
        TinyCodec().expression(item("x = 2"))
