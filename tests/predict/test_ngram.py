"""The text-similarity predictor: tf-idf rows, its kernel offset by hand, irt at weight 0, state, replay."""

import numpy as np
import pytest

from rollwise.predict.features import PromptFeatures, hashed_ngrams
from rollwise.predict.irt import IRTPredictor
from rollwise.predict.ngram import NgramPredictor, tfidf_rows
from rollwise.predict.registry import build_predictor, ngram_buckets_of
from rollwise.predict.replay import load_run, replay, summarize
from tests.support.predict import write_synthetic_run

BUCKETS = 512


def _text(prompts):
    return tfidf_rows(*hashed_ngrams(prompts, 3, BUCKETS), BUCKETS)


def test_tfidf_rows_are_unit_length_and_ignore_what_every_prompt_shares():
    x = _text(["common words alpha", "common words beta", "common words gamma"])
    assert np.sqrt(x.multiply(x).sum(axis=1)).A.ravel() == pytest.approx(np.ones(3))
    shared = set(hashed_ngrams(["common words "], 3, BUCKETS)[1].tolist())
    for bucket in shared - set(hashed_ngrams(["alpha", "beta", "gamma"], 3, BUCKETS)[1].tolist()):
        assert np.all(x[:, bucket].toarray() == 0)  # idf log(3 / 3) = 0


def test_offset_of_a_never_seen_prompt_hand_computed():
    prompts = ["sum 12 and 47", "sum 12 and 48", "sort q w e r t"]
    text, w, shrink = _text(prompts), 4.0, 1.0
    p = NgramPredictor(np.zeros(3, dtype=np.int64), text, text_weight=w, cell_shrink=shrink)
    p.observe(1, np.array([0]), np.array([1]), np.array([8]))
    r0 = p.mu[0] - p.prior_offset[0]  # the seen prompt's residual difficulty
    for i in (1, 2):
        cos = float(text[i].multiply(text[0]).sum())
        expected = r0 * (1 + w * cos) / (1 + shrink + w * cos)  # one cell-mate plus text weight w * cos
        assert p._difficulty(np.array([i]), p.step)[0][0] == pytest.approx(p.prior_offset[i] + expected)
    assert float(text[1].multiply(text[0]).sum()) > float(text[2].multiply(text[0]).sum())


def test_text_weight_zero_is_irt_exactly():
    rng = np.random.default_rng(0)
    prompts = [f"item {i} of {rng.integers(100)}" for i in range(30)]
    groups, cells = np.arange(30) % 2, np.arange(30) % 4
    ngram = NgramPredictor(groups, _text(prompts), cells, text_weight=0.0)
    irt = IRTPredictor(groups, cells)
    for step in range(1, 8):
        ids = rng.choice(30, 6, replace=False)
        s = rng.integers(0, 9, 6)
        ngram.observe(step, ids, s, np.full(6, 8))
        irt.observe(step, ids, s, np.full(6, 8))
    assert np.array_equal(ngram.mean(np.arange(30)), irt.mean(np.arange(30)))


def test_state_round_trip_continues_identically():
    rng = np.random.default_rng(1)
    prompts = [f"add {a} and {b}" for a, b in rng.integers(0, 50, (40, 2))]
    make = lambda: NgramPredictor(np.arange(40) % 3, _text(prompts), text_weight=2.0)
    first = make()
    for step in range(1, 6):
        first.observe(step, rng.choice(40, 8, replace=False), rng.integers(0, 9, 8), np.full(8, 8))
    second = make()
    second.load_state_dict(first.state_dict())
    ids, s = rng.choice(40, 8, replace=False), rng.integers(0, 9, 8)
    first.observe(6, ids, s, np.full(8, 8))
    second.observe(6, ids, s, np.full(8, 8))
    assert np.array_equal(first.mean(np.arange(40)), second.mean(np.arange(40)))
    with pytest.raises(ValueError, match="text_sum"):
        make().load_state_dict({k: v for k, v in first.state_dict().items() if k != "text_sum"})


def test_registry_needs_ngram_features_and_names_the_fix():
    assert ngram_buckets_of("ngram", {"buckets": 1024}) == 1024 and ngram_buckets_of("irt") == 0
    plain = PromptFeatures(group=np.zeros(3, dtype=np.int64), group_names=np.array(["t|"]),
                           task=np.zeros(3, dtype=np.int64), task_names=np.array(["t"]), length=np.full(3, 5.0))
    with pytest.raises(ValueError, match="n-gram buckets"):
        build_predictor("ngram", {}, 3, plain)
    with pytest.raises(ValueError, match="text_weight"):
        build_predictor("ngram", {"text_weight": -1}, 3, plain)


def test_replay_text_that_carries_difficulty_helps_never_seen_prompts(tmp_path):
    """One group, one cell: only the text tells an easy prompt from a hard one before it is seen."""
    group, rates, _ = write_synthetic_run(tmp_path / "run", pool=240, groups=1, steps=30)
    order = np.argsort(rates[0])  # the text names the prompt's difficulty decile, padded to equal length
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    decile = np.empty(240, dtype=int)
    decile[order] = np.arange(240) * 10 // 240
    prompts = [f"level {words[d]:>5s} item" for d in decile]
    indptr, indices = hashed_ngrams(prompts, 3, 1 << 12)
    features = PromptFeatures.load(tmp_path / "run" / "features.npz")
    features.ngram_indptr, features.ngram_indices, features.ngram_buckets = indptr, indices, 1 << 12
    features.save(tmp_path / "run" / "features.npz")
    log = load_run(tmp_path / "run")
    result = {name: summarize(replay(log, build_predictor(name, settings, log.pool_size, log.features)))
              for name, settings in (("irt", {}), ("ngram", {"buckets": 1 << 12, "text_weight": 10.0}))}
    assert result["ngram"]["overall"]["unseen"]["spearman"] > result["irt"]["overall"]["unseen"]["spearman"] + 0.2


@pytest.mark.slow
def test_a_run_on_the_ngram_predictor_resumes_exactly_and_replays(tmp_path, capsys):
    from rollwise.cli import main
    from rollwise.predict.features import PromptFeatures as Saved
    from rollwise.store.checkpoint import list_checkpoints, read_checkpoint
    from rollwise.track import read_metrics
    from rollwise.train import train
    from tests.support.runs import comparable, tiny_config

    straight = tiny_config(tmp_path, "straight", steps=4, checkpoint_every=1, selector="mopps", predictor="ngram",
                           predictor_options={"buckets": 1024, "text_weight": 2.0}, eval_every=2)
    train(straight)
    split = straight.replace(out_dir=str(tmp_path / "split"))
    train(split.replace(steps=2))
    train(split, resume=True)
    assert comparable(read_metrics(f"{straight.out_dir}/metrics.jsonl")) == \
        comparable(read_metrics(f"{split.out_dir}/metrics.jsonl"))
    states = [read_checkpoint(list_checkpoints(c.out_dir)[-1][1])["components"]["predictor"] for c in (straight, split)]
    assert all(np.array_equal(states[0][k], states[1][k]) for k in ("mu", "var", "text_sum", "text_count"))
    assert np.abs(states[0]["text_sum"]).sum() > 0  # the text statistics did learn
    assert Saved.load(tmp_path / "straight" / "features.npz").ngram_buckets == 1024
    assert main(["replay", straight.out_dir, "--predictor", "ngram:buckets=1024", "--no-plots",
                 "--out", str(tmp_path / "replay")]) == 0
    assert "ngram:buckets=1024" in capsys.readouterr().out


def test_replaying_ngram_on_a_log_without_ngrams_or_config_says_how_to_fix(tmp_path, capsys):
    from rollwise.cli import main

    write_synthetic_run(tmp_path / "run", steps=3)  # features.npz without n-grams, no config.yaml (a plug-in's log)
    assert main(["replay", str(tmp_path / "run"), "--predictor", "ngram", "--no-plots", "--out", str(tmp_path / "o")]) == 2
    assert "no config.yaml to rebuild them" in capsys.readouterr().err
