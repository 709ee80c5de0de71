"""Offline replay: recovering known rates, the rule shares, the `rollwise replay` command, bad logs."""

import json

import numpy as np
import pytest

from rollwise.cli import main
from rollwise.predict.registry import build_predictor
from rollwise.predict.replay import load_run, phase_of, replay, summarize
from rollwise.select.quality import spearman
from rollwise.select.rules import build_rule
from tests.support.predict import write_synthetic_run


def test_replay_recovers_known_rates_and_is_calibrated(tmp_path):
    group, rates, _ = write_synthetic_run(tmp_path / "run", steps=60)
    log = load_run(tmp_path / "run")
    for name in ("irt", "drift"):
        rep = replay(log, build_predictor(name, {}, log.pool_size, log.features))
        true = rates[np.array([r.step for r in log.rows if r.kind == "train" for _ in r.ids]), rep.ids]
        late = phase_of(rep.ordinal, rep.steps) == 2
        assert spearman(rep.mean[late], true[late]) > 0.85, name
        summary = summarize(rep)
        assert summary["last"]["all"]["ece"] < 0.08, name
        assert summary["overall"]["unseen"]["zero_var_auc"] > 0.55, name  # Beta(1, 1) for all: 0.5


def test_sharing_beats_per_prompt_on_never_seen_prompts(tmp_path):
    write_synthetic_run(tmp_path / "run", steps=40)
    log = load_run(tmp_path / "run")
    result = {name: summarize(replay(log, build_predictor(name, {}, log.pool_size, log.features)))
              for name in ("beta", "irt")}
    assert result["beta"]["first"]["unseen"]["spearman"] is None  # Beta(1, 1) for all: no ranking
    assert result["irt"]["first"]["unseen"]["spearman"] > 0.3


def test_rule_shares_include_the_oracle_ceiling(tmp_path):
    write_synthetic_run(tmp_path / "run", steps=30)
    log = load_run(tmp_path / "run")
    rules = {"uniform": lambda: build_rule("uniform"), "topb": lambda: build_rule("topb"),
             "greso": lambda: build_rule("greso", pool_size=log.pool_size)}
    rep = replay(log, build_predictor("irt", {}, log.pool_size, log.features), rules)
    overall = summarize(rep)["overall"]["rules"]
    assert overall["oracle"] >= max(overall["uniform"], overall["topb"], overall["greso"])
    assert overall["topb"] > overall["uniform"]


def test_replay_command_on_a_tiny_run_dir(tmp_path, capsys):
    write_synthetic_run(tmp_path / "run", steps=12)
    out = tmp_path / "out"
    code = main(["replay", str(tmp_path / "run"), "--predictor", "beta", "--predictor", "irt:ability_step_var=0.02",
                 "--rule", "topb", "--rule", "mixed:source=predictive", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "irt:ability_step_var=0.02" in text and "mixed:source=predictive" in text
    report = json.loads((out / "replay.json").read_text())
    assert set(report["predictors"]) == {"beta", "irt:ability_step_var=0.02"}
    assert report["predictors"]["beta"]["mean"]["first"]["all"]["groups"] == 2 * 24
    assert {p.name for p in out.glob("*.png")} == {"spearman_by_step.png", "calibration.png", "rule_shares.png"}


@pytest.mark.parametrize("damage, message", [
    (lambda text: text[:-5], "line 14: the last line is not terminated"),
    (lambda text: text.replace('"ids":[', '"ids":[9999,', 1).replace('"successes":[', '"successes":[0,', 1)
     .replace('"trials":[', '"trials":[8,', 1), "outcomes.jsonl:2: index 9999 is outside the pool"),
    (lambda text: text.replace('"successes":[', '"successes":[99,', 1).replace('"ids":[', '"ids":[239,', 1)
     .replace('"trials":[', '"trials":[8,', 1), "outcomes.jsonl:2: index 239 has successes 99"),
])
def test_replay_command_rejects_a_bad_log_naming_file_and_line(tmp_path, capsys, damage, message):
    write_synthetic_run(tmp_path / "run", steps=12)
    path = tmp_path / "run" / "outcomes.jsonl"
    path.write_text(damage(path.read_text()))
    assert main(["replay", str(tmp_path / "run"), "--no-plots", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message.split(": ", 1)[-1].split(":")[-1].strip() in err


def test_unknown_predictor_or_setting_is_an_error(tmp_path, capsys):
    write_synthetic_run(tmp_path / "run", steps=3)
    assert main(["replay", str(tmp_path / "run"), "--predictor", "irt:bogus=1", "--no-plots",
                 "--out", str(tmp_path / "o")]) == 2
    assert "unknown setting(s) bogus" in capsys.readouterr().err


def test_every_kind_replays_partial_is_ignored_and_eval_skipped(tmp_path):
    from rollwise.predict.features import PromptFeatures
    from rollwise.predict.outcomes import OutcomeLog

    run = tmp_path / "run"
    run.mkdir()
    log = OutcomeLog(run / "outcomes.jsonl", pool_size=4, eval_size=2)
    log.write(1, "prefilter", [0, 1, 2, 3], [8, 0, 4, 4], [8, 8, 8, 8])
    log.write(2, "presample", [0, 1], [2, 2], [4, 4])
    log.write(2, "train", [0, 1], [8, 0], [8, 8])
    log.write(2, "partial", [2], [8], [8])
    log.write(3, "eval", [0, 1], [1, 1], [4, 4])
    log.write(3, "probe", [3], [4], [8])
    log.write(4, "train", [2, 3], [4, 4], [8, 8])
    PromptFeatures(group=np.zeros(4, dtype=np.int64), group_names=np.array(["g"]), task=np.zeros(4, dtype=np.int64),
                   task_names=np.array(["t"]), length=np.ones(4)).save(run / "features.npz")
    rep = replay(load_run(run), build_predictor("beta", {}, 4, None))
    assert rep.steps == 2 and rep.seen.all()  # the prefilter row made every prompt seen before its train row
    # prompt 2 at step 4: prefilter 4/8 only (its partial row is ignored): a = .5 + .5 + 4 = 5, b = 5
    assert rep.a[2] == pytest.approx(5.0) and rep.b[2] == pytest.approx(5.0)


def test_a_predictive_selectors_posteriors_become_a_later_prior(tmp_path):
    from rollwise.data.pool import PoolItem, PromptPool
    from rollwise.predict.features import build_features
    from rollwise.select.predictive import PredictiveSelector
    from rollwise.select.priors import build_prior, save_posteriors
    from rollwise.select.rules import ThompsonTopB

    pool = PromptPool([PoolItem(id=10 + i, prompt=f"q{i}", answer="1", metadata={}) for i in range(5)], "file")
    selector = PredictiveSelector(build_predictor("irt", {}, 5, build_features(pool)), ThompsonTopB())
    selector.observe(np.array([0, 1]), np.array([8, 0]), np.array([8, 8]))
    save_posteriors(selector, pool, tmp_path / "selector.npz")
    a, b = build_prior(str(tmp_path), pool, 3.0)
    assert a / (a + b) == pytest.approx(selector.predict(np.arange(5)))
