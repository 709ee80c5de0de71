"""Selectors: posterior updates, Top-B and threshold selection, priors, the offline filter, state."""

import json

import numpy as np
import pytest

from rollwise.config import RunConfig
from rollwise.data.pool import DataError, PoolItem, PromptPool, item_hash
from rollwise.select import build_selector
from rollwise.select.mopps import MoPPSSelector, band_select, top_b, update_posterior
from rollwise.select.offline import OfflineFilterSelector
from rollwise.select.priors import build_prior, metadata_rates, save_posteriors
from rollwise.select.quality import group_stats, mae, spearman
from rollwise.select.uniform import UniformSelector


def make_pool(n=6, metadata=None):
    return PromptPool([PoolItem(id=100 + i, prompt=f"q{i}", answer=str(i), metadata=(metadata or (lambda i: {}))(i))
                       for i in range(n)], "file", "test")


def test_posterior_update_with_decay_hand_computed():
    # a = 0.5 * 3 + 0.5 * 1 + 2 = 4; b = 0.5 * 5 + 0.5 * 1 + (4 - 2) = 5
    a, b = update_posterior(np.array([3.0]), np.array([5.0]), np.array([1.0]), np.array([1.0]), [2], [4], 0.5)
    assert a.tolist() == [4.0] and b.tolist() == [5.0]
    # lambda = 1 accumulates: 3 + 2 = 5, 5 + 2 = 7
    a, b = update_posterior(np.array([3.0]), np.array([5.0]), np.array([1.0]), np.array([1.0]), [2], [4], 1.0)
    assert a.tolist() == [5.0] and b.tolist() == [7.0]


def test_observe_updates_only_observed_prompts_twice_with_decay():
    sel = MoPPSSelector(4, decay=0.5)
    sel.observe(np.array([1, 3]), np.array([8, 0]), np.array([8, 8]))
    # prompt 1: a = .5 + .5 + 8 = 9, b = 1; prompt 3: a = 1, b = 9
    assert sel.a.tolist() == [1.0, 9.0, 1.0, 1.0] and sel.b.tolist() == [1.0, 1.0, 1.0, 9.0]
    sel.observe(np.array([1]), np.array([4]), np.array([8]))
    # a = .5 * 9 + .5 + 4 = 9, b = .5 * 1 + .5 + 4 = 5
    assert sel.a[1] == 9.0 and sel.b[1] == 5.0
    assert sel.predict(np.array([1]))[0] == pytest.approx(9 / 14)
    with pytest.raises(ValueError, match="twice"):
        sel.observe(np.array([2, 2]), np.array([1, 1]), np.array([2, 2]))


def test_top_b_keeps_draws_closest_to_target():
    draws = np.array([0.05, 0.52, 0.9, 0.45, 0.6, 0.49])
    assert top_b(draws, 3, 0.5).tolist() == [5, 1, 3]
    assert top_b(draws, 2, 0.9).tolist() == [2, 4]


def test_band_select_inside_then_fill_by_distance():
    rng = np.random.default_rng(0)
    draws = np.array([0.1, 0.35, 0.95, 0.69, 0.25, 0.8])
    both_inside = band_select(draws, 2, (0.3, 0.7), rng)
    assert sorted(both_inside.tolist()) == [1, 3]
    # only 1 and 3 are inside; then 0.25 (0.05 away), then 0.8 (0.1 away)
    assert band_select(draws, 4, (0.3, 0.7), rng).tolist() == [1, 3, 4, 5]
    picked = band_select(draws, 1, (0.3, 0.7), rng)
    assert picked.tolist()[0] in (1, 3)


class FixedDraws:
    """A generator stand-in whose Beta draws are given, to test selection on fixed draws."""

    def __init__(self, draws):
        self.draws = np.asarray(draws)

    def beta(self, a, b):
        assert len(a) == len(self.draws)
        return self.draws

    def choice(self, values, size, replace):
        return np.asarray(values)[:size]


def test_mopps_select_on_fixed_draws_and_candidate_set():
    sel = MoPPSSelector(6, candidates=8)
    chosen = sel.select(np.arange(6), 2, FixedDraws([0.1, 0.48, 0.9, 0.7, 0.51, 0.3]))
    assert chosen.tolist() == [4, 1]
    threshold = MoPPSSelector(6, band=(0.3, 0.7))
    chosen = threshold.select(np.arange(6), 3, FixedDraws([0.1, 0.48, 0.9, 0.75, 0.51, 0.2]))
    assert sorted(chosen[:2].tolist()) == [1, 4] and chosen[2] == 3
    # with c = 2 and k = 2 only 4 candidates get a draw
    small = MoPPSSelector(100, candidates=2)
    assert len(small.select(np.arange(100), 2, FixedDraws([0.5, 0.4, 0.3, 0.2]))) == 2


def test_mopps_prefers_informative_prompts():
    sel = MoPPSSelector(300, decay=1.0, candidates=300)
    sel.observe(np.arange(100), np.full(100, 8), np.full(100, 8))  # solved
    sel.observe(np.arange(100, 200), np.zeros(100), np.full(100, 8))  # hopeless
    sel.observe(np.arange(200, 300), np.full(100, 4), np.full(100, 8))  # learnable
    chosen = sel.select(np.arange(300), 50, np.random.default_rng(1))
    # a solved or hopeless arm is drawn near 0.5 only rarely (Beta(9, 1) < 0.6 with probability 1%)
    assert len(set(chosen.tolist())) == 50 and (chosen >= 200).sum() >= 45


def test_uniform_is_without_replacement_within_an_epoch():
    sel = UniformSelector(10)
    rng = np.random.default_rng(0)
    first = np.concatenate([sel.select(np.arange(10), 3, rng) for _ in range(3)])
    assert len(set(first.tolist())) == 9
    nxt = sel.select(np.arange(10), 3, rng)  # one left from epoch 0, two from epoch 1
    assert len(set(nxt.tolist())) == 3 and set(range(10)) - set(first.tolist()) <= set(nxt.tolist())
    assert sel.epoch == 1


def test_offline_filter_keeps_band_and_predicts_initial_rate():
    sel = OfflineFilterSelector(6, band=(0.1, 0.9))
    assert sel.predict(np.arange(6)) is None
    sel.fit(np.array([0, 4, 8, 2, 7, 8]), np.full(6, 8))
    rng = np.random.default_rng(0)
    chosen = np.concatenate([sel.select(np.arange(6), 3, rng) for _ in range(2)])
    assert set(chosen.tolist()) == {1, 3, 4}
    # asked for 4, only 3 in band: the closest outside (rate 1.0 and 0.0 tie at 0.1 away) fills
    assert len(sel.select(np.arange(6), 4, rng)) == 4
    assert sel.predict(np.array([1]))[0] == 0.5


@pytest.mark.parametrize("make", [lambda: UniformSelector(50), lambda: MoPPSSelector(50),
                                  lambda: MoPPSSelector(50, band=(0.3, 0.7))])
def test_state_round_trip_continues_identically(make):
    def play(sel, rng, steps):
        out = []
        for _ in range(steps):
            ids = sel.select(np.arange(50), 8, rng)
            sel.observe(ids, rng.integers(0, 5, size=8), np.full(8, 4))
            out.append(ids.tolist())
        return out

    straight, rng = make(), np.random.default_rng(3)
    expected = play(straight, rng, 6)
    first, rng2 = make(), np.random.default_rng(3)
    play(first, rng2, 3)
    state, rng_state = first.state_dict(), rng2.bit_generator.state
    resumed, rng3 = make(), np.random.default_rng(99)
    resumed.load_state_dict(state)
    rng3.bit_generator.state = rng_state
    assert play(resumed, rng3, 3) == expected[3:]


def test_prior_from_counts_rates_and_unknown_ids(tmp_path):
    pool = make_pool(4)
    path = tmp_path / "prior.jsonl"
    path.write_text('{"id": 101, "successes": 2, "trials": 8}\n{"id": 102, "rate": 0.25}\n{"id": 999, "rate": 1}\n')
    a, b = build_prior(str(path), pool, 3.0)
    assert a.tolist() == [1.0, 7.0, 1.75, 1.0] and b.tolist() == [1.0, 19.0, 3.25, 1.0]
    as_json = tmp_path / "prior.json"
    as_json.write_text(json.dumps({"100": 0.5}))
    a, b = build_prior(str(as_json), pool, 2.0)
    assert a[0] == 2.0 and b[0] == 2.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 100, "rate": 1.5}\n')
    with pytest.raises(DataError, match="row 1"):
        build_prior(str(bad), pool, 3.0)
    with pytest.raises(DataError, match="expected none, metadata"):
        build_prior(str(tmp_path / "missing.json"), pool, 3.0)


def test_prior_from_an_earlier_runs_posteriors(tmp_path):
    pool = make_pool(3)
    sel = MoPPSSelector(3)
    sel.observe(np.array([2]), np.array([3]), np.array([4]))
    save_posteriors(sel, pool, tmp_path / "selector.npz")
    a, b = build_prior(str(tmp_path), pool, 3.0)
    assert a.tolist() == sel.a.tolist() and b.tolist() == sel.b.tolist()


def test_metadata_prior_orders_by_difficulty_and_uses_pass_rate():
    pool = make_pool(3, lambda i: {"num_terms": [2, 6, 4][i], "difficulty": {"num_terms": [2, 6]}})
    rates = metadata_rates(pool)
    assert rates[0] == pytest.approx(0.9) and rates[1] == pytest.approx(0.1) and 0.1 < rates[2] < 0.9
    explicit = make_pool(2, lambda i: {"pass_rate": [0.2, 0.7][i]})
    assert metadata_rates(explicit).tolist() == [0.2, 0.7]
    a, b = build_prior("metadata", explicit, 3.0)
    assert a.tolist() == pytest.approx([1.6, 3.1])


def test_build_selector_by_name_on_the_runs_predictor():
    from rollwise.predict.beta import BetaPredictor
    from rollwise.select.predictive import PredictiveSelector
    from rollwise.select.rules import MixedChance, ThompsonBand, ThompsonTopB

    pool, predictor = make_pool(6), BetaPredictor(6)
    built = {name: build_selector(RunConfig(selector=name, task="file", train_file="x"), pool, predictor)
             for name in ("uniform", "offline", "mopps", "mopps-threshold", "mixed", "greso")}
    assert isinstance(built["uniform"], UniformSelector) and isinstance(built["offline"], OfflineFilterSelector)
    for name, rule in [("mopps", ThompsonTopB), ("mopps-threshold", ThompsonBand), ("mixed", MixedChance)]:
        assert isinstance(built[name], PredictiveSelector) and isinstance(built[name].rule, rule)
        assert built[name].predictor is predictor and not built[name].observes_predictor  # the run feeds it
    assert built["mopps-threshold"].rule.band == (0.3, 0.7)


def test_quality_measures():
    assert spearman([0.1, 0.2, 0.3], [0.3, 0.2, 0.1]) == pytest.approx(-1.0)
    assert spearman([0.5, 0.5], [0.1, 0.9]) is None
    assert mae([0.5, 0.25], [0.0, 0.25]) == 0.25
    assert group_stats(np.array([0, 3, 8, 8]), np.array([8, 8, 8, 8])) == {
        "zero_var_ratio": 0.75, "all_zero_groups": 1, "all_one_groups": 2}


def test_prior_from_an_offline_runs_pass_rate_counts(tmp_path):
    pool = make_pool(3)
    sel = OfflineFilterSelector(3)
    sel.fit(np.array([0, 2, 8]), np.array([8, 8, 8]))
    save_posteriors(sel, pool, tmp_path / "selector.npz")
    a, b = build_prior(str(tmp_path), pool, 3.0)  # published: a = 3 s + 1, b = 3 f + 1
    assert a.tolist() == [1.0, 7.0, 25.0] and b.tolist() == [25.0, 19.0, 1.0]


# ---------------------------------------------------------------------------- prompt identity of priors


def test_saved_prior_checks_prompt_content_by_hash(tmp_path, caplog):
    pool = make_pool(3)
    sel = MoPPSSelector(3)
    sel.observe(np.array([1]), np.array([3]), np.array([4]))
    save_posteriors(sel, pool, tmp_path / "selector.npz")
    saved = np.load(tmp_path / "selector.npz")
    assert saved["hashes"].tolist() == [item_hash(f"q{i}", str(i)) for i in range(3)]
    with caplog.at_level("WARNING"):
        a, _ = build_prior(str(tmp_path), pool, 3.0)
    assert a.tolist() == [1.0, 4.0, 1.0] and "identity not checked" not in caplog.text
    # same ids, prompt 101 now asks something else: the prior would describe another question
    changed = PromptPool([PoolItem(100, "q0", "0"), PoolItem(101, "other", "1"), PoolItem(102, "q2", "9")], "file")
    with pytest.raises(DataError, match=r"selector.npz: prompt id 101 has another prompt or answer.*2 of 3"):
        build_prior(str(tmp_path), changed, 3.0)
    # a smaller pool: only the ids it holds are checked
    smaller = PromptPool([PoolItem(102, "q2", "2")], "file")
    assert build_prior(str(tmp_path), smaller, 3.0)[0].tolist() == [1.0]


def test_saved_prior_without_hashes_still_loads_and_warns(tmp_path, caplog):
    np.savez(tmp_path / "selector.npz", ids=np.array([100, 101]), a=np.array([2.0, 3.0]), b=np.array([4.0, 5.0]))
    with caplog.at_level("WARNING"):
        a, b = build_prior(str(tmp_path), make_pool(3), 3.0)
    assert a.tolist() == [2.0, 3.0, 1.0] and b.tolist() == [4.0, 5.0, 1.0]
    assert "2 of 2 matched prompt ids carry no content hash; identity not checked" in caplog.text
    (tmp_path / "selector.npz").write_bytes(b"PK\x03\x04 damaged")
    with pytest.raises(DataError, match="selector.npz: unreadable"):
        build_prior(str(tmp_path), make_pool(3), 3.0)


def test_file_prior_hashes_are_checked_when_present(tmp_path, caplog):
    pool = make_pool(3)
    good, bad = f"{item_hash('q1', '1'):016x}", f"{item_hash('q1', '2'):016x}"
    path = tmp_path / "p.jsonl"
    path.write_text(f'{{"id": 101, "rate": 0.5, "hash": "{good}"}}\n')
    with caplog.at_level("WARNING"):
        assert build_prior(str(path), pool, 2.0)[0].tolist() == [1.0, 2.0, 1.0]
    assert "identity not checked" not in caplog.text
    path.write_text(f'{{"id": 101, "rate": 0.5, "hash": "{bad}"}}\n')
    with pytest.raises(DataError, match="p.jsonl: prompt id 101 has another prompt or answer"):
        build_prior(str(path), pool, 2.0)
    as_json = tmp_path / "p.json"
    as_json.write_bytes(b"\xef\xbb\xbf" + json.dumps({"101": {"rate": 0.5, "hash": bad}}).encode())
    with pytest.raises(DataError, match="p.json: prompt id 101 has another"):
        build_prior(str(as_json), pool, 2.0)
    q2 = f"{item_hash('q2', '2'):016x}"
    path.write_text('{"id": 101, "rate": 0.5}\n{"id": 102, "rate": 0.5, "hash": "%s"}\n' % q2)
    with caplog.at_level("WARNING"):
        build_prior(str(path), pool, 2.0)
    assert "1 of 2 matched prompt ids carry no content hash" in caplog.text


@pytest.mark.parametrize("text, message", [
    ('{"id": 101, "rate": 0.5, "hash": "xyz"}', "row 1: column 'hash' must be 16 hex digits"),
    ('{"id": 101, "rate": NaN}', "row 1: column 'rate': 'NaN' is not a JSON number"),
    ('{"id": 101.5, "rate": 0.5}', "row 1: column 'id' must be a non-negative integer, got 101.5"),
    ('{"id": true, "rate": 0.5}', "row 1: column 'id' must be a non-negative integer, got True"),
    ('{"id": 101, "rate": 0.5}\n{"id": 101, "rate": 0.1}', "prompt id 101 appears more than once"),
])
def test_bad_prior_rows_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(text + "\n")
    with pytest.raises(DataError, match=message):
        build_prior(str(path), make_pool(3), 3.0)


def test_json_prior_keys_must_be_ids(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"q1": 0.5}))
    with pytest.raises(DataError, match="bad.json: key 'q1' is not a prompt id"):
        build_prior(str(path), make_pool(3), 3.0)
