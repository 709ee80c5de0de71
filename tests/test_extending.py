"""docs/extending.md's example works as written: a new selection rule is its module, a builder and one
registry line, and then trains like any other selector."""

from __future__ import annotations

import re
import sys
import types

import numpy as np
import pytest

from rollwise.select.registry import SELECTORS
from tests.support import REPO

DOC = REPO / "docs" / "extending.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture
def variance_selector(monkeypatch):
    """The page's three code blocks: the module, the builder (in rollwise.select) and the registry line."""
    module_code, builder_code, registry_line = _blocks()[:3]
    module = types.ModuleType("rollwise.select.variance")
    exec(module_code, module.__dict__)
    monkeypatch.setitem(sys.modules, "rollwise.select.variance", module)
    import rollwise.select as select

    exec(builder_code, select.__dict__)
    monkeypatch.setattr(SELECTORS, "entries", dict(SELECTORS.entries))
    exec(registry_line, {"SELECTORS": SELECTORS})
    yield module


def test_the_rule_picks_the_largest_predicted_variance(variance_selector):
    from rollwise.predict.beta import BetaPredictor

    predictor = BetaPredictor(4, decay=1.0)
    predictor.observe(1, np.array([0, 1, 2, 3]), np.array([0, 4, 8, 2]), np.array([8, 8, 8, 8]))
    chosen = variance_selector.LargestVariance().select(predictor, np.arange(4), 2, np.random.default_rng(0))
    assert chosen.tolist() == [1, 3]  # p = 0.5 and 0.3: the largest p (1 - p); 0/8 and 8/8 are left out


@pytest.mark.slow
def test_it_trains_through_configuration_alone(variance_selector, tmp_path):
    from rollwise.config import RunConfig
    from rollwise.train import train

    cfg = RunConfig(out_dir=str(tmp_path / "run"), selector="variance", steps=2, batch_prompts=4,
                    samples_per_prompt=2, train_size=16, eval_size=4, eval_samples=1, eval_every=2, probe_every=0,
                    progress=False, report_to="none", warmup_steps=0, warmup_target_acc=0.0)
    summary = train(cfg)
    assert summary["total_rollouts"] == 2 * 4 * 2 and not summary["interrupted"]
