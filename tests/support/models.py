"""A tiny Hugging Face model directory (a randomly initialised Llama with a word-level tokenizer) and run
configurations that train it on a small file pool of sums. The `hf_model_dir` fixture (tests/conftest.py)
saves one per test module."""

import json

import torch

from rollwise.config import RunConfig


def save_hf_model(directory):
    """Save a tiny randomly initialised Llama with a word-level tokenizer as a Hugging Face directory."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<pad>", "<eos>", "<unk>"] + [str(d) for d in range(10)] + ["+", "=", "Calculate", ".", "<answer>",
                                                                          "</answer>", "answer", "the", "final"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Digits(True)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    config = LlamaConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=0, eos_token_id=1, bos_token_id=1, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


def file_pools(tmp_path):
    rows = [{"id": i, "prompt": f"Calculate {i} + 1 .", "answer": str(i + 1)} for i in range(12)]
    train_file, eval_file = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows[:8]))
    eval_file.write_text("".join(json.dumps(r) + "\n" for r in rows[8:]))
    return str(train_file), str(eval_file)


def hf_config(tmp_path, model_dir, **changes):
    train_file, eval_file = file_pools(tmp_path)
    base = dict(out_dir=str(tmp_path / "run"), model=str(model_dir), task="file", train_file=train_file,
                eval_file=eval_file, verifier="exact", batch_prompts=2, samples_per_prompt=3, max_new_tokens=4,
                steps=2, eval_every=2, eval_samples=1, probe_every=0, progress=False, verify_workers=1)
    base.update(changes)
    return RunConfig(**base)
