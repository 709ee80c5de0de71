"""A selector made of a predictor and a selection rule, behind the training loop's Selector protocol.

    selector = PredictiveSelector(BetaPredictor(len(pool), decay=0.5), ThompsonTopB(0.5), candidates=8)

draws the candidate set (c * k of the eligible prompts, the whole set when smaller) and lets the rule
choose k of them from the predictor's beliefs. With `BetaPredictor` and `ThompsonTopB` (or
`ThompsonBand`) it makes exactly MoPPSSelector's selections, with the same random draws in the same
order, so it can replace it in a run without changing a seeded result.

State is one flat dict (what checkpoints and `rollwise.select.priors.save_posteriors` read): the
predictor's arrays under their own names (a Beta predictor's `a`, `b`, ... as MoPPS saves them), the
rule's under `rule/<name>`, and the observation counter under `selector_step`.
"""

from __future__ import annotations

import numpy as np

from rollwise.predict.base import EVIDENCE_KINDS

RULE_PREFIX = "rule/"
STEP_KEY = "selector_step"


class PredictiveSelector:
    """Selector protocol (`rollwise.select.base.Selector`) over a Predictor and a SelectionRule."""

    def __init__(self, predictor, rule, candidates: int = 8, name: str | None = None,
                 observes_predictor: bool = True) -> None:
        """`observes_predictor=False` when the predictor is shared and fed by its owner (a training run feeds
        its one predictor itself, for the allocator and RPO too): the selector then observes for its rule
        and saves the rule's state only."""
        if candidates < 1:
            raise ValueError(f"candidates (the candidate factor c) must be at least 1, got {candidates}")
        self.predictor, self.rule = predictor, rule
        self.observes_predictor = observes_predictor
        self.candidate_factor = int(candidates)
        self.name = name or f"{predictor.name}+{rule.name}"
        self.step = 0

    def start(self, estimate) -> dict:
        return {}  # no up-front estimate: the predictor starts from its prior

    def select(self, candidates: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        candidates = np.asarray(candidates, dtype=np.int64)
        size = self.candidate_factor * k
        if candidates.size > size:
            candidates = rng.choice(candidates, size=size, replace=False)
        return np.asarray(self.rule.select(self.predictor, candidates, k, rng), dtype=np.int64)

    def observe(self, ids, successes, trials, step: int | None = None, kind: str = "train") -> None:
        """Feed verified outcomes to the predictor (and, for `train` rollouts, the rule).

        `step` is the training step; without it every call counts as the next step (a loop that calls
        observe once per step, or once per generation batch under dynamic sampling).
        """
        self.step = self.step + 1 if step is None else int(step)
        if self.observes_predictor:
            self.predictor.observe(self.step, ids, successes, trials, kind)
        if kind == "train":
            self.rule.observe(np.asarray(ids, dtype=np.int64), np.asarray(successes), np.asarray(trials))
        elif kind not in EVIDENCE_KINDS + ("partial",):
            raise ValueError(f"selector observe: unexpected kind {kind!r}")

    def predict(self, ids: np.ndarray) -> np.ndarray:
        return self.predictor.mean(np.asarray(ids, dtype=np.int64))

    def beta(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.predictor.beta(np.asarray(ids, dtype=np.int64))

    def state_dict(self) -> dict:
        state = dict(self.predictor.state_dict()) if self.observes_predictor else {}
        state.update({RULE_PREFIX + key: value for key, value in self.rule.state_dict().items()})
        state[STEP_KEY] = self.step
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore; a MoPPSSelector's state (no rule, no counter) loads into the Beta + Thompson pair."""
        own = {key: value for key, value in state.items() if not key.startswith(RULE_PREFIX) and key != STEP_KEY}
        if self.observes_predictor:
            self.predictor.load_state_dict(own)
        self.rule.load_state_dict({key[len(RULE_PREFIX):]: value for key, value in state.items()
                                   if key.startswith(RULE_PREFIX)})
        self.step = int(state.get(STEP_KEY, 0))
