"""Summary numbers on synthetic runs with hand-computed crossings, and the report's files."""

import json
import math

import pytest

from rollwise.cli import main
from rollwise.evidence.report import discover, write_report
from rollwise.evidence.summary import first_crossing, format_tables, load_run, mean_se, summarize
from tests.support.reports import write_run


PROBE = {5: {"probe_spearman": -1.0}, 20: {"probe_spearman": 0.2}, 40: {"probe_spearman": 0.4}}


@pytest.fixture
def runs(tmp_path):
    """base: finals 0.5 and 0.3 (default target 0.4); fast: reaches 0.4 at steps 20 and 10; never: never."""
    return {
        "base": [write_run(tmp_path / "base" / "seed-0", [0.1, 0.2, 0.3, 0.4, 0.5], seed=0),
                 write_run(tmp_path / "base" / "seed-1", [0.1, 0.2, 0.2, 0.3, 0.3], seed=1)],
        "fast": [write_run(tmp_path / "fast" / "seed-0", [0.1, 0.3, 0.5, 0.5, 0.6], rollouts=32, tokens=120,
                           seconds=2.5, seed=0, extra=PROBE),
                 write_run(tmp_path / "fast" / "seed-1", [0.1, 0.4, 0.4, 0.5, 0.6], rollouts=32, tokens=120,
                           seconds=2.5, seed=1)],
        "never": [write_run(tmp_path / "never" / "seed-0", [0.1, 0.1, 0.2, 0.2, 0.3], seed=0)],
    }


def loaded(runs):
    return {name: [load_run(p) for p in paths] for name, paths in runs.items()}


def test_mean_se_and_first_crossing():
    assert mean_se([20, 10]) == {"mean": 15.0, "se": 5.0, "n": 2}
    assert mean_se([3, None, float("nan")]) == {"mean": 3.0, "se": None, "n": 1}
    rows = [{"step": 0, "eval_temp_acc": 0.1}, {"step": 1}, {"step": 2, "eval_temp_acc": 0.45, "total_rollouts": 8}]
    assert first_crossing(rows, 0.4)["steps"] == 2 and first_crossing(rows, 0.4)["rollouts"] == 8
    assert first_crossing(rows, 0.5) is None


def test_summary_default_target_crossings_and_ratios(runs):
    s = summarize(loaded(runs))
    assert s["baseline"] == "base" and s["target"] == pytest.approx(0.4)
    base, fast, never = (s["variants"][k] for k in ("base", "fast", "never"))
    assert base["stats"]["final_acc"]["mean"] == pytest.approx(0.4)
    assert base["stats"]["final_acc"]["se"] == pytest.approx(0.1)
    # per seed: base seed 0 reaches 0.4 at step 30, seed 1 never
    assert [r["reached"] for r in base["runs"]] == [True, False]
    assert base["to_target"]["per_seed"]["steps"] == {"mean": 30.0, "se": None, "n": 1, "reached": 1, "runs": 2}
    # mean curve of base: 0.1 0.2 0.25 0.35 0.4 -> reaches at step 40
    assert base["to_target"]["mean_curve"] == {"reached": True, "steps": 40, "rollouts": 640, "tokens": 3200,
                                               "seconds": 40, "wall_seconds": 40.5}
    # fast: seeds reach at steps 20 and 10 (rollouts 640 and 320)
    per_seed = fast["to_target"]["per_seed"]
    assert (per_seed["steps"]["mean"], per_seed["steps"]["se"]) == (15.0, 5.0)
    assert (per_seed["rollouts"]["mean"], per_seed["rollouts"]["se"]) == (480.0, 160.0)
    # fast mean curve: 0.1 0.35 0.45 -> step 20: 640 rollouts, 2400 tokens, 50 s
    assert fast["to_target"]["mean_curve"]["steps"] == 20
    assert fast["ratios"] == pytest.approx({"steps": 0.5, "rollouts": 1.0, "tokens": 0.75, "seconds": 1.25,
                                            "wall_seconds": 50.5 / 40.5})
    assert base["ratios"]["steps"] == 1.0
    assert never["to_target"]["mean_curve"]["reached"] is False
    assert never["to_target"]["per_seed"]["steps"]["reached"] == 0
    assert never["to_target"]["per_seed"]["steps"]["mean"] is None
    assert all(v is None for v in never["ratios"].values())
    # probe after the first quarter (steps > 10): (0.2 + 0.4) / 2; one seed has it
    assert fast["stats"]["probe_spearman"]["mean"] == pytest.approx(0.3)
    assert fast["stats"]["effective_ratio"]["mean"] == 0.5 and base["stats"]["probe_spearman"]["mean"] is None
    assert fast["stats"]["total_rollouts"]["mean"] == 40 * 32
    json.dumps(s)  # serialisable as is


def test_given_target_that_the_baseline_never_reaches(runs):
    s = summarize(loaded(runs), target=0.55)
    assert s["target_source"] == "given"
    assert s["variants"]["base"]["to_target"]["mean_curve"]["reached"] is False
    assert s["variants"]["fast"]["to_target"]["mean_curve"]["steps"] == 40
    assert s["variants"]["fast"]["ratios"]["steps"] is None  # nothing to divide by
    table = format_tables(s)
    assert "never" in table and "0.5500" in table


def test_write_report_files(runs, tmp_path):
    out = tmp_path / "report"
    summary = write_report(out, runs)
    for name in ("accuracy.png", "effective.png", "prediction.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "<table>" in html
    md = (out / "report.md").read_text()
    assert "| variant" in md and "| fast" in md and "never" in md and "![accuracy](accuracy.png)" in md
    assert json.loads((out / "summary.json").read_text())["target"] == pytest.approx(summary["target"])
    assert not math.isnan(summary["target"])


def test_discover_groups_and_report_cli(runs, tmp_path, capsys):
    (tmp_path / "compare.yaml").write_text("variants: {never: {}, base: {}, fast: {}}\n")
    groups = discover([tmp_path])
    assert list(groups) == ["never", "base", "fast"] and [p.name for p in groups["base"]] == ["seed-0", "seed-1"]
    listed = discover([runs["fast"][1], runs["base"][0]])
    assert list(listed) == ["fast", "base"]
    assert list(discover(runs["base"], labels=["a", "b"])) == ["a", "b"]
    with pytest.raises(ValueError, match="one per run dir"):
        discover(runs["base"], labels=["a"])
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        discover([tmp_path / "base", runs["fast"][0]])
    out = tmp_path / "cli-report"
    code = main(["report", str(runs["base"][0]), str(runs["fast"][0]), "--out", str(out), "--baseline", "fast",
                 "--target", "0.3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Baseline: fast" in printed and "0.3000" in printed
    assert (out / "report.html").is_file()


def test_report_explains_settings_terms_and_what_the_seeds_cannot_separate(runs, tmp_path):
    (runs["fast"][0] / "config.yaml").write_text("seed: 0\nselector: mopps\nsteps: 40\nout_dir: /x/fast/seed-0\n")
    for path in runs["base"] + runs["never"]:
        (path / "config.yaml").write_text(f"seed: 0\nselector: uniform\nsteps: 40\nout_dir: {path}\n")
    out = tmp_path / "report"
    summary = write_report(out, runs)
    assert summary["settings"]["differ"] == {"base": {"selector": "uniform"}, "fast": {"selector": "mopps"},
                                             "never": {"selector": "uniform"}}
    assert summary["settings"]["shared"] == {"steps": 40}
    # fast - base = 0.6 - 0.4 = +0.2 at se sqrt(0 + 0.1^2) = 0.1: not beyond 2 se; never has one seed (eval se 0.01)
    sep = summary["separation"]
    assert sep["fast"]["difference"] == pytest.approx(0.2) and sep["fast"]["separated"] is False
    assert sep["never"]["se_source"] == "evaluation" and sep["never"]["se"] == pytest.approx(math.hypot(0.1, 0.01))
    assert any(w.startswith("fast vs base") and "cannot tell them apart" in w for w in summary["warnings"])
    assert any("One seed only for never" in w for w in summary["warnings"])
    html = (out / "report.html").read_text()
    assert html.count('class="warning"') == len(summary["warnings"]) == 3
    assert "selector=mopps" in html and "<dt>train s</dt>" in html and "<dt>reached (mean curve)</dt>" in html
    md = (out / "report.md").read_text()
    assert "## Glossary" in md and "seeds reaching target" in md and "its mean curve reaches it by construction" in md
    # run directories relative to the report, so that the report travels with its runs
    for run in summary["variants"]["base"]["runs"]:
        assert not run["run_dir"].startswith("/") and (out / run["run_dir"] / "metrics.jsonl").is_file()
    assert str(tmp_path) not in md


def test_a_separated_variant_gets_no_warning(tmp_path):
    runs = {"base": [write_run(tmp_path / "b" / f"seed-{i}", [0.1, 0.2 + 0.01 * i], seed=i) for i in range(3)],
            "good": [write_run(tmp_path / "g" / f"seed-{i}", [0.1, 0.4 + 0.01 * i], seed=i) for i in range(3)]}
    summary = write_report(tmp_path / "report", runs)
    assert summary["separation"]["good"]["separated"] is True and summary["warnings"] == []


def test_the_crossing_mark_lies_on_the_drawn_curve(runs):
    from rollwise.evidence.plots import crossing_point
    from rollwise.evidence.summary import mean_curve

    s = summarize(loaded(runs))
    for name in ("base", "fast"):
        curve = mean_curve([r["rows"] for r in loaded(runs)[name]])
        for cost in ("steps", "rollouts", "seconds"):
            x, y = crossing_point(curve, cost, s["target"])
            i = list(curve["step"] if cost == "steps" else curve[cost]).index(x)
            assert y == curve["acc"][i] >= s["target"] - 1e-9
            assert x == s["variants"][name]["to_target"]["mean_curve"][cost]  # the ratios' crossing
