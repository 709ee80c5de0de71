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

    def __init__(self, groups: np.ndarray, decay: float = 0.5, group_decay: float = 0.8,
                 prior_count: float = 2.0, decay_to: str = "group", shift_count: float = float("inf"),
                 prior=None) -> None:
        if not 0.0 < decay <= 1.0 or not 0.0 < group_decay <= 1.0:
            raise ValueError(f"drift predictor: decay and group_decay must lie in (0, 1], got {decay}, {group_decay}")
        if not prior_count > 0:
            raise ValueError(f"drift predictor: prior_count must be positive, got {prior_count}")
        if decay_to not in ("group", "prior"):
            raise ValueError(f"drift predictor: decay_to must be group or prior, got {decay_to!r}")
        if not shift_count > 0:
            raise ValueError(f"drift predictor: shift_count must be positive, got {shift_count}")
        self.decay_to, self.shift_count = decay_to, float(shift_count)
        self.groups = np.asarray(groups, dtype=np.int64)
        self.decay, self.group_decay, self.prior_count = float(decay), float(group_decay), float(prior_count)
        size, num_groups = len(self.groups), int(self.groups.max()) + 1 if len(self.groups) else 0
        a0, b0 = prior_arrays(size, prior)
        self.prior_a, self.prior_b = a0, b0
        self.prior_mean = a0 / (a0 + b0)
        group_mean = np.bincount(self.groups, self.prior_mean, num_groups) / np.maximum(
            np.bincount(self.groups, minlength=num_groups), 1)
        self.group_a = 2.0 * np.clip(group_mean, EPS, 1 - EPS)  # Beta(1, 1) for the uniform prior
        self.group_b = 2.0 - self.group_a
        self.group_s, self.group_f = np.zeros(num_groups), np.zeros(num_groups)
        self.theta0 = self._level()
        self.a, self.b = prior_count * self.prior_mean, prior_count * (1 - self.prior_mean)
        self.start_count = self.a + self.b if decay_to == "group" else a0 + b0
        self.anchor = self.theta0[self.groups].copy()

    def _level(self, groups=slice(None)) -> np.ndarray:
        a, b = self.group_a[groups] + self.group_s[groups], self.group_b[groups] + self.group_f[groups]
        return logit(a / (a + b))

    def observe(self, step: int, ids, successes, trials, kind: str = "train") -> None:
        checked = checked_observation(ids, successes, trials, len(self.a), kind)
        if checked is None or not len(checked[0]):
            return
        ids, successes, trials = checked
        g = self.groups[ids]
        seen = np.unique(g)
        self.group_s[seen] *= self.group_decay
        self.group_f[seen] *= self.group_decay
        np.add.at(self.group_s, g, successes)
        np.add.at(self.group_f, g, trials - successes)
        theta = self._level(g)
        a_now, b_now = self.beta(ids)
        if self.decay_to == "group":
            prior_now = expit(logit(self.prior_mean[ids]) + theta - self.theta0[g])
            prior_a, prior_b = self.prior_count * prior_now, self.prior_count * (1 - prior_now)
        else:
            prior_a, prior_b = self.prior_a[ids], self.prior_b[ids]
        self.a[ids] = self.decay * a_now + (1 - self.decay) * prior_a + successes
        self.b[ids] = self.decay * b_now + (1 - self.decay) * prior_b + trials - successes
        self.anchor[ids] = theta

    def beta(self, ids) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids, dtype=np.int64)
        a, b = self.a[ids], self.b[ids]
        count = a + b
        shift = self._level(self.groups[ids]) - self.anchor[ids]
        if np.isfinite(self.shift_count):  # own evidence discounts the group's move
            shift = shift * self.shift_count / (self.shift_count + np.maximum(count - self.start_count[ids], 0))
        mean = expit(logit(a / count) + shift)
        mean = np.clip(mean, EPS, 1 - EPS)
        return mean * count, (1 - mean) * count

    def mean(self, ids) -> np.ndarray:
        a, b = self.beta(ids)
        return a / (a + b)

    def state_dict(self) -> dict:
        return {"a": self.a.copy(), "b": self.b.copy(), "anchor": self.anchor.copy(),
                "prior_mean": self.prior_mean.copy(), "prior_a": self.prior_a.copy(), "prior_b": self.prior_b.copy(), "group_s": self.group_s.copy(), "group_f": self.group_f.copy(),
                "group_a": self.group_a.copy(), "group_b": self.group_b.copy(), "theta0": self.theta0.copy()}

    def load_state_dict(self, state: dict) -> None:
        size, groups = (len(self.a),), (len(self.group_s),)
        load_arrays(self, state, {"a": size, "b": size, "anchor": size, "prior_mean": size, "prior_a": size,
                                  "prior_b": size, "group_s": groups,
                                  "group_f": groups, "group_a": groups, "group_b": groups, "theta0": groups})
