"""Item response: a shared ability per group that moves every step, a difficulty per prompt.

    logit p_i(t) = theta_g(t) - d_i,        g = the group of prompt i (rollwise.predict.features)

- Ability theta_g has a Gaussian posterior N(theta_g, u_g) that follows a random walk: between
  observations its variance grows by `ability_step_var` per step. When the group is observed it is
  refitted from all of that observation's groups by a few Newton steps on the binomial likelihood,
  with the walked posterior as the prior (a Laplace / extended Kalman update). Each prompt enters
  with its difficulty's uncertainty folded in (logit scaled by 1 / sqrt(1 + pi * v_i / 8)), so
  prompts the predictor barely knows move the ability little.
- Difficulty d_i has a Gaussian posterior N(mu_i, v_i), refitted the same way after the ability
  (Newton steps with the ability fixed); its variance grows by `difficulty_step_var` per step since
  the prompt's last observation (capped at the prior's), so a prompt the policy learns can move.
- The prior of d_i is N(c_h + m0_i, prior_var): c_h is a learned offset of its *cell* (group x
  prompt-length bucket), the shrunken mean of the posterior means of the cell's observed prompts;
  m0_i comes from a per-prompt prior (`rollwise.select.priors`): the prompt's prior logit relative to
  its group's mean, 0 for Beta(1, 1).

`beta(ids)` maps each prompt's predictive distribution, p = sigmoid(x) with x ~ N(theta_g - mu_i,
u_g + v_i), to a Beta by matching its mean and variance (computed by 8-node Gauss-Hermite quadrature), so
Thompson draws come from that posterior and the mean is the predicted rate.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logit

from rollwise.predict.base import checked_observation, load_arrays
from rollwise.predict.beta import prior_arrays

NODES, WEIGHTS = np.polynomial.hermite.hermgauss(8)  # moments within 1e-3 of 40 nodes for v <= 3
MIN_COUNT, MAX_COUNT = 0.05, 1e5


def logit_normal_moments(m: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of sigmoid(x), x ~ N(m, v), by 8-node Gauss-Hermite quadrature.

    >>> mean, var = logit_normal_moments(np.array([0.0]), np.array([1e-12]))
    >>> round(float(mean[0]), 6), round(float(var[0]), 6)
    (0.5, 0.0)
    """
    x = m[:, None] + np.sqrt(2.0 * v)[:, None] * NODES[None, :]
    p = expit(x)
    w = WEIGHTS / np.sqrt(np.pi)
    mean = p @ w
    return mean, np.maximum((p * p) @ w - mean * mean, 0.0)


def moment_matched_beta(mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Beta(a, b) with the given mean and variance (pseudo-count clipped to [MIN_COUNT, MAX_COUNT])."""
    mean = np.clip(mean, 1e-9, 1 - 1e-9)
    count = np.clip(mean * (1 - mean) / np.maximum(var, 1e-300) - 1.0, MIN_COUNT, MAX_COUNT)
    return mean * count, (1 - mean) * count


def newton_ability(theta, prior_var, offsets, scale, successes, trials, groups, steps: int = 3):
    """MAP of each group's ability given its prompts' logit offsets (pure; vectorised over groups).

    Maximises -(t - theta_g)^2 / (2 prior_var_g) + sum_i [s_i log p_i + (n_i - s_i) log(1 - p_i)],
    p_i = sigmoid(scale_i * (t - offsets_i)), over the groups present in `groups` (one index per
    observed prompt). Returns (new theta, posterior variance) for all groups.
    """
    theta, prior_var = np.asarray(theta, dtype=np.float64), np.asarray(prior_var, dtype=np.float64)
    t = theta.copy()
    size = len(theta)
    for _ in range(steps):
        p = expit(scale * (t[groups] - offsets))
        grad = np.bincount(groups, scale * (successes - trials * p), size) - (t - theta) / prior_var
        info = np.bincount(groups, scale * scale * trials * p * (1 - p), size) + 1.0 / prior_var
        t = t + grad / info
    p = expit(scale * (t[groups] - offsets))
    info = np.bincount(groups, scale * scale * trials * p * (1 - p), size) + 1.0 / prior_var
    return t, 1.0 / info


def newton_difficulty(mu, var, ability, successes, trials, steps: int = 3):
    """MAP and Laplace variance of each prompt's difficulty d with prior N(mu, var), ability fixed (pure)."""
    d = np.asarray(mu, dtype=np.float64).copy()
    for _ in range(steps):
        p = expit(ability - d)
        grad = -(d - mu) / var - (successes - trials * p)
        info = 1.0 / var + trials * p * (1 - p)
        d = d + grad / info
    p = expit(ability - d)
    return d, 1.0 / (1.0 / var + trials * p * (1 - p))


class IRTPredictor:
    """Group abilities x prompt difficulties (see the module docstring).

    >>> p = IRTPredictor(np.array([0, 0, 1]), np.array([0, 0, 1]))
    >>> p.observe(1, np.array([0]), np.array([8]), np.array([8]))
    >>> [round(float(x), 2) for x in p.mean(np.array([1, 2]))]  # the unseen group-mate moved, the other group not
    [0.87, 0.5]
    """

    name = "irt"

    def __init__(self, groups: np.ndarray, cells: np.ndarray | None = None, prior=None, prior_var: float = 2.0,
                 ability_var: float = 4.0, ability_step_var: float = 0.01, difficulty_step_var: float = 0.002,
                 cell_shrink: float = 5.0, newton_steps: int = 3) -> None:
        for name, value in (("prior_var", prior_var), ("ability_var", ability_var)):
            if not value > 0:
                raise ValueError(f"irt predictor: {name} must be positive, got {value}")
        for name, value in (("ability_step_var", ability_step_var), ("difficulty_step_var", difficulty_step_var),
                            ("cell_shrink", cell_shrink)):
            if not value >= 0:
                raise ValueError(f"irt predictor: {name} must be non-negative, got {value}")
        self.groups = np.asarray(groups, dtype=np.int64)
        self.cells = np.zeros(len(self.groups), dtype=np.int64) if cells is None else np.asarray(cells, dtype=np.int64)
        self.prior_var, self.ability_step_var, self.difficulty_step_var = prior_var, ability_step_var, difficulty_step_var
        self.cell_shrink, self.newton_steps = cell_shrink, newton_steps
        size, num_groups = len(self.groups), (int(self.groups.max()) + 1 if len(self.groups) else 0)
        num_cells = int(self.cells.max()) + 1 if len(self.cells) else 0
        a0, b0 = prior_arrays(size, prior)
        prior_logit = logit(a0 / (a0 + b0))
        group_logit = np.bincount(self.groups, prior_logit, num_groups) / np.maximum(np.bincount(self.groups, minlength=num_groups), 1)
        self.theta, self.theta_var = group_logit.copy(), np.full(num_groups, float(ability_var))
        self.group_step = np.zeros(num_groups)
        self.prior_offset = group_logit[self.groups] - prior_logit  # difficulty relative to the group, from the prior
        self.mu, self.var = self.prior_offset.copy(), np.full(size, float(prior_var))
        self.seen = np.zeros(size)                                    # 1.0 once observed (float: plain state)
        self.last_step = np.zeros(size)
        self.cell_sum, self.cell_count = np.zeros(num_cells), np.zeros(num_cells)
        self.step = 0.0

    # ------------------------------------------------------------------ reading
    def _offset_parts(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """Numerator and denominator of each unseen prompt's learned difficulty offset: its cell's sum of
        observed residual difficulties over the cell's count plus `cell_shrink` (subclasses add evidence)."""
        c = self.cells[ids]
        return self.cell_sum[c], self.cell_count[c] + self.cell_shrink

    def _cell_offset(self, ids) -> np.ndarray:
        numerator, denominator = self._offset_parts(ids)
        return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)

    def _difficulty(self, ids, step) -> tuple[np.ndarray, np.ndarray]:
        """Difficulty mean and variance of each prompt, walked to `step` (unseen prompts: their prior).

        An unseen prompt's mu / var hold its prior offset / prior_var, so only its cell offset is added."""
        mu = self.mu[ids]
        unseen = self.seen[ids] == 0
        if unseen.any():
            mu[unseen] += self._cell_offset(ids[unseen])
        walked = self.var[ids] + self.difficulty_step_var * np.maximum(step - self.last_step[ids], 0)
        return mu, np.minimum(walked, self.prior_var)

    def _ability(self, groups, step) -> tuple[np.ndarray, np.ndarray]:
        walked = self.theta_var[groups] + self.ability_step_var * np.maximum(step - self.group_step[groups], 0)
        return self.theta[groups], walked

    def logit_moments(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of each prompt's logit success rate now."""
        ids = np.asarray(ids, dtype=np.int64)
        theta, theta_var = self._ability(self.groups[ids], self.step)
        mu, var = self._difficulty(ids, self.step)
        return theta - mu, theta_var + var

    def beta(self, ids) -> tuple[np.ndarray, np.ndarray]:
        return moment_matched_beta(*logit_normal_moments(*self.logit_moments(ids)))

    def mean(self, ids) -> np.ndarray:
        return logit_normal_moments(*self.logit_moments(ids))[0]

    # ------------------------------------------------------------------ learning
    def observe(self, step: int, ids, successes, trials, kind: str = "train") -> None:
        checked = checked_observation(ids, successes, trials, len(self.groups), kind)
        if checked is None or not len(checked[0]):
            return
        ids, successes, trials = checked
        self.step = max(self.step, float(step))
        g = self.groups[ids]
        mu, var = self._difficulty(ids, self.step)
        observed = np.unique(g)
        theta, theta_var = self._ability(np.arange(len(self.theta)), self.step)
        scale = 1.0 / np.sqrt(1.0 + np.pi * var / 8.0)
        new_theta, new_var = newton_ability(theta, theta_var, mu, scale, successes, trials, g, self.newton_steps)
        self.theta[observed], self.theta_var[observed] = new_theta[observed], new_var[observed]
        self.group_step[observed] = self.step
        d, d_var = newton_difficulty(mu, var, self.theta[g], successes, trials, self.newton_steps)
        self._update_cells(ids, d)
        self.mu[ids], self.var[ids] = d, d_var
        self.seen[ids], self.last_step[ids] = 1.0, self.step

    def _update_cells(self, ids, new_mu) -> None:
        """Keep each cell's sum of its observed prompts' difficulty means (relative to their prior offsets)."""
        old = np.where(self.seen[ids] > 0, self.mu[ids] - self.prior_offset[ids], 0.0)
        self._add_evidence(ids, new_mu - self.prior_offset[ids] - old, 1.0 - self.seen[ids])

    def _add_evidence(self, ids, residual_change, newly_seen) -> None:
        """Add each prompt's change of residual difficulty (and 1 if first seen) to what the offsets read."""
        c = self.cells[ids]
        np.add.at(self.cell_sum, c, residual_change)
        np.add.at(self.cell_count, c, newly_seen)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        keys = ("mu", "var", "seen", "last_step", "prior_offset", "theta", "theta_var", "group_step", "cell_sum",
                "cell_count")
        return {**{k: getattr(self, k).copy() for k in keys}, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        size, groups, cells = (len(self.groups),), (len(self.theta),), (len(self.cell_sum),)
        load_arrays(self, state, {"mu": size, "var": size, "seen": size, "last_step": size, "prior_offset": size,
                                  "theta": groups, "theta_var": groups, "group_step": groups, "cell_sum": cells,
                                  "cell_count": cells})
        self.step = float(state["step"])
