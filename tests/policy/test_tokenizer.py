"""The tiny model's codec as a transformers tokenizer: the same ids as the codec for every pool prompt, answers
read back, and an exported model that answers a sum through `pipeline("text-generation")` without rollwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rollwise.policy import shipped, tiny, tiny_codecs
from rollwise.config import RunConfig
from rollwise.data.pool import PoolItem, reasoning_gym_pools
from rollwise.policy.scratchpad import ScratchpadCodec, ScratchpadLayout
from rollwise.policy.tokenizer import build_tokenizer

torch.set_num_threads(1)


def pools(preset):
    cfg = RunConfig.from_sources(preset=preset)
    train, held_out = reasoning_gym_pools(cfg.task, cfg.task_options, cfg.train_size, cfg.eval_size, cfg.data_seed)
    return cfg, list(train) + list(held_out)


@pytest.mark.parametrize("preset", ["sums", "scratchpad"])
def test_every_pool_prompt_gets_the_codecs_ids(preset):
    cfg, items = pools(preset)
    codec = tiny_codecs.make_codec(cfg.tiny_codec, cfg.task_options)
    tok = build_tokenizer(codec)
    ids = tok([it.prompt for it in items])["input_ids"]  # the pool's own text: "Calculate 47 + 45."
    assert ids == [codec.prompt_ids(it) for it in items]
    for it in items:
        readable = tok.decode(codec.supervised_target(it), skip_special_tokens=True)
        assert readable.split(",")[-1] == it.answer
    assert tok.decode(codec.prompt_ids(items[0]), skip_special_tokens=True).startswith(
        items[0].metadata["expression"].replace(" ", ""))


def test_answers_of_every_shape_read_back():
    codec = tiny.TinyCodec(tiny.TinyLayout.for_task({}))
    tok = build_tokenizer(codec)
    for answer in ("0", "7", "21", "100", "300", "-21", "-5"):
        assert tok.decode(codec.target_ids(answer), skip_special_tokens=True) == answer
    assert tok.decode(codec.target_ids("21")) == "21<eos>"
    assert tok.decode([tiny.CHAR_TO_ID[c] for c in "12"]) == "12"  # not a whole field: left as written
    scratch = ScratchpadCodec(ScratchpadLayout(slots=3, width=3))
    assert build_tokenizer(scratch).decode(scratch.sums_ids([47, 45, 99])) == "47,92,191"


def test_other_layouts_and_texts():
    item = PoolItem(0, "What is 7 * 12 - 3?", "81", {"expression": "7 * 12 - 3"})
    for layout in (tiny.TinyLayout.for_task({"max_terms": 4, "max_digits": 3}),
                   tiny.TinyLayout(number_width=3, answer_width=4, prompt_width=12, reverse_numbers=False)):
        codec = tiny.TinyCodec(layout)
        assert build_tokenizer(codec)(item.prompt)["input_ids"] == codec.prompt_ids(item)
    scratch = ScratchpadCodec(ScratchpadLayout(slots=4, width=4))
    plain = PoolItem(1, "Calculate 5 + 1000 + 38.", "1043", {"expression": "5 + 1000 + 38"})
    assert build_tokenizer(scratch)(plain.prompt)["input_ids"] == scratch.prompt_ids(plain)


# The user's side: transformers only. Kept free of any rollwise import; the test checks that it stays so.
NO_ROLLWISE = r"""
import json, sys
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
model_dir, prompts = sys.argv[1], json.loads(sys.argv[2])
tok = AutoTokenizer.from_pretrained(model_dir)
pipe = pipeline("text-generation", model=model_dir)
answers = [out[0]["generated_text"] for out in pipe(prompts, return_full_text=False, do_sample=False)]
model = AutoModelForCausalLM.from_pretrained(model_dir)
ids = tok(prompts[0], return_tensors="pt")
direct = tok.decode(model.generate(**ids, do_sample=False)[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
chat = pipe([{"role": "user", "content": prompts[0]}], do_sample=False)[0]["generated_text"][-1]["content"]
print(json.dumps({"answers": answers, "direct": direct, "chat": chat, "ids": tok(prompts)["input_ids"],
                  "rollwise_imported": any(m.split(".")[0] == "rollwise" for m in sys.modules)}))
"""


def test_an_exported_tiny_model_answers_sums_with_transformers_alone(tmp_path):
    from rollwise.policy.export import save_policy
    from rollwise.policy.models import Policy, load_model_dir_or_file

    model, codec = load_model_dir_or_file(shipped.SHIPPED_DIR / "sums")
    out = save_policy(Policy(model, codec, str(shipped.SHIPPED_DIR / "sums"), 5), tmp_path / "model")
    _, items = pools("sums")
    items = [it for it in items if it.metadata["num_terms"] == 2][:40]  # the part the warm-up taught
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", NO_ROLLWISE, str(out), json.dumps([it.prompt for it in items])],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert not got["rollwise_imported"]
    assert got["ids"] == [codec.prompt_ids(it) for it in items]
    assert all(a.isdigit() for a in got["answers"]), got["answers"]  # a number, read the usual way round
    correct = sum(a == it.answer for a, it in zip(got["answers"], items))
    assert correct >= 10, (correct, got["answers"])  # the shipped warm-up answers half of 2-term sums greedily
    assert got["direct"] == got["chat"] == got["answers"][0]


def test_exported_files_hold_no_absolute_paths(tmp_path):
    from rollwise.policy.export import save_policy
    from rollwise.policy.models import Policy, load_model_dir_or_file

    model, codec = load_model_dir_or_file(shipped.SHIPPED_DIR / "scratchpad")
    out = save_policy(Policy(model, codec, str(shipped.SHIPPED_DIR / "scratchpad"), 24), tmp_path / "model")
    texts = {p.name: p.read_text() for p in Path(out).iterdir() if p.suffix in (".json", ".jinja", ".md")}
    assert {"tokenizer.json", "tokenizer_config.json", "rollwise.json"} <= set(texts)
    for name, text in texts.items():
        for root in (str(tmp_path), str(shipped.SHIPPED_DIR), str(Path.home())):
            assert root not in text, (name, root)
    assert json.loads(texts["rollwise.json"])["exported_from"] == "scratchpad"
