"""Drift: prompts that are not observed move with the current success rate of prompts like them.

Prompts of one group (same task and difficulty fields: `rollwise.predict.features`) improve together.
The group's level is the logit of its decayed success rate,

    theta_g = logit((A_g + S_g) / (A_g + B_g + S_g + F_g)),

where S_g, F_g are its successes and failures, decayed by `group_decay` each time the group is
observed (A_g / B_g: the group's prior, two pseudo-observations at the mean of its prompts' prior
means). Each prompt keeps MoPPS's decayed Beta(a_i, b_i), expressed in the frame of
the group level `anchor_i` at which it was last observed; it is read in today's frame by moving its
mean on the logit scale by how much the group moved since, keeping its pseudo-count:

    m_i = sigmoid(logit(a_i / (a_i + b_i)) + theta_g - anchor_i),   n_i = a_i + b_i,
    Beta(m_i * n_i, (1 - m_i) * n_i).

A prompt never observed starts at its prior mean (Beta(1, 1): 0.5) with `prior_count` pseudo-counts
at anchor theta_g(0), so it is read at the group's current rate. On observation the prompt's Beta
and its prior are both moved to today's frame, then MoPPS's update applies,

    a_i <- decay * a_i + (1 - decay) * prior_count * m0_i(t) + s,   (b_i likewise with k - s),

with m0_i(t) its prior mean moved with the group, and anchor_i <- theta_g. With a group that never
moves this is MoPPS with prior Beta(prior_count * m0, prior_count * (1 - m0)).

Settings that replay chose between (docs/prediction.md):

- `decay_to="prior"` decays toward the prompt's own prior (a0, b0) as MoPPS does, instead of toward
  the group's current rate: a prompt that stays at 0 in an improving group is not pulled up.
- `level="fit"` estimates each group's move from the observed prompts' surprise instead of its raw
  rate: one Newton step (repeated `newton_steps` times) on the shift delta_g that maximises
  -delta^2 / (2 level_var) + sum_i [s_i log sigmoid(x_i + delta) + f_i log sigmoid(-x_i - delta)],
  x_i the prompt's predicted logit before the observation. Which prompts a rule picked then does
  not bias the level (the raw rate of prompts chosen near 0.5 is near 0.5, whatever the group's).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logit

from rollwise.predict.base import checked_observation, load_arrays
from rollwise.predict.beta import prior_arrays

EPS = 1e-9


class DriftPredictor:
    """Per-prompt decayed Beta read through its group's level shift (see the module docstring).

    >>> p = DriftPredictor(np.array([0, 0, 1]), decay=0.5, group_decay=1.0)
    >>> p.observe(1, np.array([0]), np.array([8]), np.array([8]))   # group 0 solves 8/8 (+1 prior: 9/10)
    >>> round(float(p.mean(np.array([1]))[0]), 3)                    # unseen prompt 1 reads its group's rate
    0.9
    """

    name = "drift"

    def __init__(self, groups: np.ndarray, decay: float = 0.5, group_decay: float = 0.8, prior_count: float = 2.0,
                 decay_to: str = "group", level: str = "rate", level_var: float = 1.0, newton_steps: int = 3,
                 prior=None) -> None:
        _check(0.0 < decay <= 1.0 and 0.0 < group_decay <= 1.0, "decay and group_decay must lie in (0, 1]")
        _check(prior_count > 0 and level_var > 0, "prior_count and level_var must be positive")
        _check(decay_to in ("group", "prior"), f"decay_to must be group or prior, got {decay_to!r}")
        _check(level in ("rate", "fit"), f"level must be rate or fit, got {level!r}")
        self.decay, self.group_decay, self.prior_count = float(decay), float(group_decay), float(prior_count)
        self.decay_to, self.level = decay_to, level
        self.level_var, self.newton_steps = float(level_var), int(newton_steps)
        self.groups = np.asarray(groups, dtype=np.int64)
        size, num_groups = len(self.groups), int(self.groups.max()) + 1 if len(self.groups) else 0
        self.prior_a, self.prior_b = prior_arrays(size, prior)
        self.prior_mean = self.prior_a / (self.prior_a + self.prior_b)
        group_mean = np.bincount(self.groups, self.prior_mean, num_groups) / np.maximum(
            np.bincount(self.groups, minlength=num_groups), 1)
        self.group_a = 2.0 * np.clip(group_mean, EPS, 1 - EPS)  # Beta(1, 1) for the uniform prior
        self.group_b = 2.0 - self.group_a
        self.group_s, self.group_f = np.zeros(num_groups), np.zeros(num_groups)
        self.theta0 = logit(self.group_a / 2.0)
        self.theta = self.theta0.copy()
        self.a, self.b = prior_count * self.prior_mean, prior_count * (1 - self.prior_mean)
        self.anchor = self.theta0[self.groups].copy()


    def observe(self, step: int, ids, successes, trials, kind: str = "train") -> None:
        checked = checked_observation(ids, successes, trials, len(self.a), kind)
        if checked is None or not len(checked[0]):
            return
        ids, successes, trials = checked
        g = self.groups[ids]
        a_before, b_before = self.beta(ids)
        self._move_levels(g, logit(a_before / (a_before + b_before)), successes, trials)
        theta = self.theta[g]
        a_now, b_now = self.beta(ids)
        if self.decay_to == "group":
            prior_now = expit(logit(self.prior_mean[ids]) + theta - self.theta0[g])
            prior_a, prior_b = self.prior_count * prior_now, self.prior_count * (1 - prior_now)
        else:
            prior_a, prior_b = self.prior_a[ids], self.prior_b[ids]
        self.a[ids] = self.decay * a_now + (1 - self.decay) * prior_a + successes
        self.b[ids] = self.decay * b_now + (1 - self.decay) * prior_b + trials - successes
        self.anchor[ids] = theta

    def _move_levels(self, g, predicted_logit, successes, trials) -> None:
        seen = np.unique(g)
        self.group_s[seen] *= self.group_decay
        self.group_f[seen] *= self.group_decay
        np.add.at(self.group_s, g, successes)
        np.add.at(self.group_f, g, trials - successes)
        if self.level == "rate":
            a, b = self.group_a[seen] + self.group_s[seen], self.group_b[seen] + self.group_f[seen]
            self.theta[seen] = logit(a / (a + b))
            return
        delta = np.zeros(len(self.theta))
        for _ in range(self.newton_steps):
            p = expit(predicted_logit + delta[g])
            grad = np.bincount(g, successes - trials * p, len(delta)) - delta / self.level_var
            info = np.bincount(g, trials * p * (1 - p), len(delta)) + 1.0 / self.level_var
            delta = delta + grad / info
        self.theta[seen] += delta[seen]

    def beta(self, ids) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids, dtype=np.int64)
        a, b = self.a[ids], self.b[ids]
        count = a + b
        shift = self.theta[self.groups[ids]] - self.anchor[ids]
        mean = np.clip(expit(logit(a / count) + shift), EPS, 1 - EPS)
        return mean * count, (1 - mean) * count

    def mean(self, ids) -> np.ndarray:
        a, b = self.beta(ids)
        return a / (a + b)

    KEYS = ("a", "b", "anchor", "prior_mean", "prior_a", "prior_b")
    GROUP_KEYS = ("theta", "theta0", "group_s", "group_f", "group_a", "group_b")

    def state_dict(self) -> dict:
        return {key: getattr(self, key).copy() for key in self.KEYS + self.GROUP_KEYS}

    def load_state_dict(self, state: dict) -> None:
        load_arrays(self, state, {**{k: (len(self.a),) for k in self.KEYS},
                                  **{k: (len(self.theta),) for k in self.GROUP_KEYS}})


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"drift predictor: {message}")
