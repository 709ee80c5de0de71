"""rollwise selection inside TRL's GRPOTrainer: real CPU runs with a tiny local Llama.

The reward function below records every reward it returns, by prompt id; the tests replay those
rewards through a fresh selector and check that the trainer's posteriors and every choice match the
replay (choices made from posteriors that already include the previous generation: no lag), that a
resumed run restores the selector and continues exactly, and that two processes (torchrun, gloo)
choose the same prompts. This file is also the two-process worker (`python -m torch.distributed.run
... tests/integrations/test_trl.py OUT_DIR`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trl")

from rollwise.integrations.selection import LateSelection, load_state  # noqa: E402
from rollwise.integrations.trl import LOG_FILE, SEED_SALT, STATE_FILE, reward_function, with_selection  # noqa: E402
from rollwise.select.mopps import MoPPSSelector  # noqa: E402
from rollwise.track import read_metrics  # noqa: E402
from tests.support import REPO  # noqa: E402

POOL = 12
GROUP = 4


def tiny_policy():
    """A 1-layer Llama and a word-level tokenizer built here (nothing downloaded)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<pad>", "<eos>", "<unk>"] + [str(d) for d in range(10)] + ["+", "=", "<answer>", "</answer>"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Digits(True)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                        unk_token="<unk>", padding_side="left")
    config = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=0, eos_token_id=1, bos_token_id=1, tie_word_embeddings=True)
    torch.manual_seed(0)
    return LlamaForCausalLM(config), tokenizer


def dataset():
    from datasets import Dataset

    return Dataset.from_list([{"id": i, "prompt": f"{i} + 1 =", "answer": str(i + 1)} for i in range(POOL)])


class RecordingReward:
    """Prompts with id % 3 == 0 always succeed, == 1 never, == 2 when the completion has an even length.

    Records (id, reward) of every call; depends on the sampled completion, so outcomes are real.
    """

    __name__ = "recorded"

    def __init__(self) -> None:
        self.calls: list[list[tuple[int, float]]] = []

    def __call__(self, prompts, completions, id, **kwargs):
        rewards = [1.0 if i % 3 == 0 else 0.0 if i % 3 == 1 else float(len(c) % 2 == 0)
                   for i, c in zip(id, completions)]
        self.calls.append(list(zip(map(int, id), rewards)))
        return rewards


def trainer(out_dir, steps, reward, per_device=8, save_steps=0, selector="mopps"):
    from trl import GRPOConfig

    model, tokenizer = tiny_policy()
    args = GRPOConfig(output_dir=str(out_dir), per_device_train_batch_size=per_device, num_generations=GROUP,
                      max_completion_length=4, max_steps=steps, learning_rate=1e-2, lr_scheduler_type="constant",
                      logging_steps=1, report_to="none", use_cpu=True, seed=0, disable_tqdm=True,
                      save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500)
    Trainer = with_selection()
    return Trainer(model=model, processing_class=tokenizer, reward_funcs=reward, args=args,
                   train_dataset=dataset(), selector=selector)


def replay(records, calls):
    """A fresh selector fed the recorded rewards: its choice before each generation, and its end state."""
    selector, rng = MoPPSSelector(POOL), np.random.default_rng([0, SEED_SALT])
    choices = []
    for record, call in zip(records, calls, strict=True):
        choices.append(selector.select(np.arange(POOL), len(record["ids"]), rng).tolist())
        ids = np.array(record["ids"])
        successes = np.array([sum(r for i, r in call if i == pid) for pid in ids])
        trials = np.array([sum(1 for i, _ in call if i == pid) for pid in ids])
        selector.observe(ids, successes, trials)
    return choices, selector


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """Five steps with MoPPS, checkpoints at steps 2 and 4."""
    out = tmp_path_factory.mktemp("straight")
    reward = RecordingReward()
    tr = trainer(out, 5, reward, save_steps=2)
    tr.train()
    return tr, reward, out


@pytest.mark.slow
def test_posteriors_come_from_the_rewards_and_choices_from_the_latest_posteriors(straight_run):
    tr, reward, out = straight_run
    records = read_metrics(out / LOG_FILE)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5] and len(reward.calls) == 5
    for record, call in zip(records, reward.calls):
        assert sorted({i for i, _ in call}) == sorted(record["ids"]) and len(call) == len(record["ids"]) * GROUP
        assert record["trials"] == [GROUP] * len(record["ids"])
    choices, expected = replay(records, reward.calls)
    # Each choice equals the replayed selector's, which had observed every earlier generation.
    assert choices == [r["ids"] for r in records]
    np.testing.assert_array_equal(tr.selection.selector.predictor.a, expected.a)
    np.testing.assert_array_equal(tr.selection.selector.predictor.b, expected.b)
    assert (tr.selection.selector.predictor.a != 1).sum() > 0 and (tr.selection.selector.predictor.b != 1).sum() > 0
    # The trainer's own log carries the selection metrics.
    logged = [row for row in tr.state.log_history if "rollwise/effective_ratio" in row]
    assert len(logged) == 5
    first = records[0]
    assert logged[0]["rollwise/acc_mean"] == pytest.approx(sum(first["successes"]) / sum(first["trials"]))


@pytest.mark.slow
def test_the_run_writes_an_outcome_log_that_rollwise_replay_reads(straight_run):
    from rollwise.predict.outcomes import read_header, read_outcomes
    from rollwise.predict.replay import load_run

    _, _, out = straight_run
    records = read_metrics(out / LOG_FILE)
    rows = read_outcomes(out / "outcomes.jsonl")
    assert read_header(out / "outcomes.jsonl")["pool_size"] == POOL
    assert [(r.step, r.kind) for r in rows] == [(g, "train") for g in range(1, 6)]
    for row, record in zip(rows, records):  # the same generations as the selection log, as integer counts
        assert row.ids.tolist() == record["ids"] and row.successes.tolist() == record["successes"]
        assert row.trials.tolist() == record["trials"]
    run = load_run(out)  # features.npz beside it: no pool or config needed
    assert len(run.features) == POOL


@pytest.mark.slow
def test_a_resumed_run_restores_the_selector_and_continues_exactly(straight_run, tmp_path):
    tr, _, out = straight_run
    full_log = (out / LOG_FILE).read_text()
    work = tmp_path / "run"
    shutil.copytree(out, work)
    assert (work / "outcomes.jsonl").stat().st_size > 0
    shutil.rmtree(work / "checkpoint-4")
    saved = load_state(work / "checkpoint-2" / STATE_FILE)
    reward = RecordingReward()
    resumed = trainer(work, 5, reward, save_steps=2)
    resumed.train(resume_from_checkpoint=str(work / "checkpoint-2"))
    records = read_metrics(work / LOG_FILE)
    # The log was cut back to step 2 and steps 3-5 written again, as in the uninterrupted run.
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert saved["selection"]["generation"] == 2 and len(reward.calls) == 3
    assert (work / LOG_FILE).read_text() == full_log
    assert (work / "outcomes.jsonl").read_text() == (out / "outcomes.jsonl").read_text()  # cut back, rewritten
    np.testing.assert_array_equal(resumed.selection.selector.predictor.a, tr.selection.selector.predictor.a)
    np.testing.assert_array_equal(resumed.selection.selector.predictor.b, tr.selection.selector.predictor.b)


class DrawRecorder:
    """A train sampler (TRL's RepeatSampler layout) noting how many generations had been scored when the
    dataloader drew each generation batch: what a sampler-only selector would have known."""

    def __init__(self, rows: int, reward: RecordingReward) -> None:
        self.rows, self.reward, self.observed_at_draw = rows, reward, []

    def __len__(self) -> int:
        return 10_000

    def __iter__(self):
        rng = np.random.default_rng(0)
        while True:
            self.observed_at_draw.append(len(self.reward.calls))
            yield from np.repeat(rng.choice(POOL, self.rows // GROUP, replace=False), GROUP).tolist()


@pytest.mark.slow
def test_a_sampler_would_choose_a_generation_late(tmp_path):
    """Why the mixin chooses in _generate_and_score_completions: TRL draws batch g + 1 before batch g is scored."""
    from trl import GRPOConfig, GRPOTrainer

    reward = RecordingReward()

    class SamplerTrainer(GRPOTrainer):
        def _get_train_sampler(self, dataset=None):
            self.recorder = DrawRecorder(self.args.generation_batch_size, reward)
            return self.recorder

    model, tokenizer = tiny_policy()
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=GROUP,
                      max_completion_length=4, max_steps=4, report_to="none", use_cpu=True, seed=0,
                      disable_tqdm=True, save_strategy="no")
    tr = SamplerTrainer(model=model, processing_class=tokenizer, reward_funcs=reward, args=args,
                        train_dataset=dataset())
    tr.train()
    lag = [generation - observed for generation, observed in enumerate(tr.recorder.observed_at_draw[:4])]
    assert lag == [0, 1, 1, 1]  # generation g was drawn knowing g - 2 outcomes; the mixin knows g - 1


@pytest.mark.slow
def test_a_checkpoint_without_selector_state_starts_from_the_prior(straight_run, tmp_path, caplog):
    _, _, out = straight_run
    work = tmp_path / "run"
    shutil.copytree(out / "checkpoint-2", work / "checkpoint-2")
    (work / "checkpoint-2" / STATE_FILE).unlink()  # as if written by a plain GRPOTrainer
    resumed = trainer(work, 3, RecordingReward())
    with caplog.at_level("WARNING", logger="rollwise.integrations.trl"):
        resumed.train(resume_from_checkpoint=str(work / "checkpoint-2"))
    assert "starts from its prior" in caplog.text
    assert resumed.selection.generation == 1 and [r["step"] for r in read_metrics(work / LOG_FILE)] == [3]


def test_processes_that_disagree_stop_training():
    """The per-generation agreement check, with an accelerator whose other process chose otherwise."""
    import torch

    from rollwise.integrations.trl import SelectionMixin

    class Accelerator:
        num_processes, device = 2, "cpu"

        def __init__(self, other):
            self.other = other

        def gather(self, tensor):
            return torch.cat([tensor, torch.as_tensor([self.other])])

    class Fake:
        def __init__(self, other):
            self.accelerator = Accelerator(other)

    SelectionMixin._check_same_choice(Fake([3, 5]), np.array([3, 5]))
    with pytest.raises(RuntimeError, match="different prompts"):
        SelectionMixin._check_same_choice(Fake([3, 6]), np.array([3, 5]))


@pytest.mark.slow
def test_evaluation_is_not_observed(tmp_path):
    reward = RecordingReward()
    tr = trainer(tmp_path, 1, reward)
    tr.train()
    before = tr.selection.state_dict()
    tr.evaluate(eval_dataset=dataset().select(range(2)))
    assert len(reward.calls) == 2  # the training generation and the evaluation
    np.testing.assert_array_equal(tr.selection.selector.predictor.a, before["selector"]["a"])
    assert tr.selection.generation == before["generation"]


def test_rollwise_verifier_is_a_trl_reward_function():
    reward = reward_function("basic_arithmetic")
    assert reward(prompts=["1 + 1 ="] * 3, completions=["<answer>2</answer>", "so 2", [{"role": "assistant",
                  "content": "<answer>3</answer>"}]], answer=["2", "2", "2"]) == [1.0, 1.0, 0.0]
    logged = []
    reward(prompts=["1 + 1 ="], completions=["<answer>" + "1" * 20_000 + "</answer>"], answer=["2"], log_metric=lambda k, v: logged.append((k, v)))
    assert ("rollwise/verify_rejected", 1.0) in logged
    with pytest.raises(KeyError, match="answer_column"):
        reward(prompts=["1 + 1 ="], completions=["2"], solution=["2"])


@pytest.mark.slow
def test_rollwise_verifier_is_the_default_success_signal(tmp_path):
    reward = reward_function("basic_arithmetic")
    tr = trainer(tmp_path, 1, [RecordingReward(), reward])
    assert tr._rollwise_success == 1  # the rollwise verifier decides success when the trainer has several
    tr.train()
    assert tr.state.log_history[0]["rewards/rollwise_basic_arithmetic/mean"] == 0.0  # an untrained model


def test_bad_settings_are_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="several reward functions"):
        trainer(tmp_path, 1, [RecordingReward(), lambda prompts, completions, **kw: [0.0] * len(prompts)])
    with pytest.raises(ValueError, match="built for 5 prompts"):
        trainer(tmp_path, 1, RecordingReward(), selector=MoPPSSelector(5))
    with pytest.raises(ValueError, match="offline"):
        trainer(tmp_path, 1, RecordingReward(), selector="offline")
    with pytest.raises(ValueError, match="distinct prompts"):
        trainer(tmp_path, 1, RecordingReward(), per_device=GROUP * (POOL + 1))


def documented_snippet(path: Path) -> str:
    """The Python block between the trl-snippet markers of a Markdown file."""
    text = path.read_text()
    block = text.split("<!-- trl-snippet")[1].split("<!-- /trl-snippet -->")[0]
    return block.split("```python\n")[1].split("```")[0]


@pytest.mark.slow
def test_the_documented_snippet_runs(tmp_path):
    """README.md and docs/trl.md show the same few lines; run them as written on the tiny model."""
    from trl import GRPOConfig, GRPOTrainer

    root = REPO
    snippet = documented_snippet(root / "docs" / "trl.md")
    assert documented_snippet(root / "README.md") == snippet
    model, tokenizer = tiny_policy()
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=GROUP,
                      max_completion_length=4, max_steps=2, report_to="none", use_cpu=True, disable_tqdm=True,
                      save_strategy="no")
    scope = {"GRPOTrainer": GRPOTrainer, "model": model, "tokenizer": tokenizer, "args": args, "dataset": dataset()}
    exec(compile(snippet, "docs/trl.md", "exec"), scope)
    trained = scope["trainer"]
    assert trained.selection.generation == 2 and len(read_metrics(tmp_path / LOG_FILE)) == 2
    # The verifier's reward is the success signal, and exactly the chosen prompts' posteriors moved.
    first = trained.state.log_history[0]
    assert first["rollwise/acc_mean"] == first["rewards/rollwise_basic_arithmetic/mean"]
    chosen = sorted({i for r in trained.selection.records for i in r["ids"]})
    total = trained.selection.selector.predictor.a + trained.selection.selector.predictor.b
    assert np.flatnonzero(total != 2).tolist() == chosen


@pytest.mark.slow
def test_rloo_trainer_selects_the_same_way(tmp_path):
    from trl import RLOOConfig, RLOOTrainer

    model, tokenizer = tiny_policy()
    reward = RecordingReward()
    args = RLOOConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=GROUP, beta=0.0,
                      max_completion_length=4, max_steps=3, report_to="none", use_cpu=True, seed=0,
                      disable_tqdm=True, save_strategy="no")
    tr = with_selection(RLOOTrainer)(model=model, processing_class=tokenizer, reward_funcs=reward, args=args,
                                     train_dataset=dataset(), selector="mopps")
    tr.train()
    choices, expected = replay(tr.selection.records, reward.calls)
    assert choices == [r["ids"] for r in tr.selection.records]
    np.testing.assert_array_equal(tr.selection.selector.predictor.a, expected.a)


def test_late_selection_moves_to_prompts_of_middling_success():
    """MoPPS through LateSelection: with true rates 0, 0.5 and 1, later choices favour the 0.5 third."""
    rates = np.repeat([0.0, 0.5, 1.0], 20)
    sel, rng = LateSelection(MoPPSSelector(len(rates), decay=1.0), seed=0), np.random.default_rng(1)
    middle = []
    for _ in range(40):
        ids = sel.choose(6)
        metrics = sel.observe(rng.binomial(8, rates[ids]), np.full(6, 8))
        middle.append(np.mean(rates[ids] == 0.5))
    assert np.mean(middle[:5]) < 0.6 and np.mean(middle[-10:]) > 0.8
    assert set(metrics) >= {"effective_ratio", "zero_var_ratio", "acc_mean", "pred_mae", "selected_predicted"}
    with pytest.raises(RuntimeError, match="pending"):
        sel.observe([1] * 6, [8] * 6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_choose_identical_prompts(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), __file__, str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["records"] == ranks[1]["records"] and ranks[0]["a"] == ranks[1]["a"]
    records = ranks[0]["records"]
    assert len(records) == 3 and all(len(r["ids"]) == 3 for r in records)
    # A group was split across the processes: its successes are the sum of both ranks' rewards.
    calls = [ranks[0]["calls"][g] + ranks[1]["calls"][g] for g in range(3)]
    assert all(len({i for i, _ in ranks[r]["calls"][0]}) == 2 for r in (0, 1))
    choices, expected = replay(records, calls)
    assert choices == [r["ids"] for r in records]
    assert ranks[0]["a"] == expected.a.tolist() and ranks[0]["b"] == expected.b.tolist()


def _two_process_worker(out_dir: str) -> None:
    """Run by each torchrun process: 3 steps of 3 prompts x 4 generations over 2 processes (6 rows each)."""
    reward = RecordingReward()
    tr = trainer(Path(out_dir) / "run", 3, reward, per_device=6)
    tr.train()
    rank = tr.accelerator.process_index
    result = {"records": tr.selection.records, "calls": reward.calls,
              "a": tr.selection.selector.predictor.a.tolist(), "b": tr.selection.selector.predictor.b.tolist()}
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    _two_process_worker(sys.argv[1])
