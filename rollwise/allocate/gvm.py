"""GVM: samples per prompt that minimise the variance of the gradient estimate (docs/methods.md section 3).

With acceptance rate p_i (share of correct samples) and gradient norm G_i (mean L2 norm, over the
correct samples, of the gradient of the sequence log-likelihood), a budget N is split as

    n_i = N * w_i / sum_l w_l,    w_i = G_i / sqrt(p_i + alpha / p_i^(beta - 1)),   alpha = 1e-3, beta = 2

with w_i = 0 where p_i = 0 or G_i = 0, rounded to integers that sum to N exactly (largest remainders,
`rollwise.allocate.base.largest_remainder`), optionally bounded per prompt.

Three sources of p_i (G_i is always the mean gradient norm over correct samples, kept from the
prompt's latest measurement; a prompt never measured gets the mean G of the prompts that were, or 1.0):
- `presample` (published): N' pre-samples per prompt give p_i = successes / N'; they are refreshed
  every `estimate_every` steps. Four failures give p = 0, and p = 0 gets no sample.
- `posterior` (rollwise's own): p_i is the predictor's mean a / (a + b) (free: no pre-samples).
- `predictor` (rollwise's own): p_i = (a + s) / (a + b + k), the predictor's Beta as read at the start
  of the step (Beta(1, 1) when the run has none) updated with this step's pre-samples (s of k), which
  are drawn every `estimate_every` steps as with `presample`: never 0 from a few failures.

The floor: a prompt whose p_i is at or below `p_floor` gets weight 0 (as p = 0 does in the paper) and
no minimum; every other prompt gets at least `min_n` samples of the main rollout, so a prompt the
predictor puts above the floor is never starved by rounding.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from rollwise.allocate.base import BetaPredictor, FlatPrior, check_ids, largest_remainder

P_SOURCES = ("presample", "posterior", "predictor")


def gvm_weights(p, g, alpha: float = 1e-3, beta: float = 2.0) -> np.ndarray:
    """w_i = G_i / sqrt(p_i + alpha / p_i^(beta - 1)), and 0 where p_i = 0 or G_i = 0 (pure).

    Small p costs many samples per correct one, large p teaches little: with the defaults the weight
    peaks at p = sqrt(alpha) ~ 0.032, and p = 0.01 weighs as much as p = 0.1.

    >>> gvm_weights([0.5, 0.1, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]).round(4).tolist()
    [1.4114, 3.0151, 0.0, 0.0]
    """
    p = np.asarray(p, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    if p.shape != g.shape:
        raise ValueError(f"p and G must have the same shape, got {p.shape} and {g.shape}")
    if not (np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()):
        raise ValueError("acceptance rates p must be finite and in [0, 1]; estimate unknown ones first")
    if not (np.isfinite(g).all() and (g >= 0).all()):
        raise ValueError("gradient norms G must be finite and non-negative; estimate unknown ones first")
    if alpha <= 0:
        raise ValueError(f"gvm alpha must be positive, got {alpha}")
    live = (p > 0) & (g > 0)
    w = np.zeros_like(p)
    w[live] = g[live] / np.sqrt(p[live] + alpha / p[live] ** (beta - 1.0))
    return w


class GVMAllocator:
    """GVM sample allocation with per-prompt estimates kept in flat arrays (NaN / -1 = unknown).

    Every step the recipe calls `needs_estimate(ids, step)` first: it also stamps the step on the
    observations that follow. Observations of one step pool: the pre-samples and the main rollout
    of the same step together give p_i (successes / trials) and G_i (mean over all correct samples).
    A prompt's estimate is stale once `estimate_every` steps have passed since it was last observed
    with at least one trial; a prompt that got n_i = 0 is thus pre-sampled again after that many steps.

    Fallbacks (training never stalls):
    - every prompt of the step has w_i = 0 (p_i = 0 or G_i = 0 for all): the budget is spread evenly
      over them, earlier ids taking the remainder; likewise, when every prompt with w_i > 0 sits at
      `max_n`, the rest is spread evenly over the zero-weight prompts;
    - G_i unknown (no correct sample measured yet, or norms not measured): the mean G_i of the pool's
      measured prompts, or 1.0 when none is measured (then w depends on p alone);
    - `min_n` applies to every prompt above the floor `p_floor`, zero-weight ones (G_i = 0) included;
      a prompt at or below the floor gets weight 0 and no minimum.

    >>> gvm = GVMAllocator(pool_size=3)
    >>> gvm.needs_estimate(np.array([0, 1, 2]), step=0).tolist()
    [True, True, True]
    >>> gvm.observe(np.array([0, 1, 2]), np.array([4, 1, 0]), np.array([8, 8, 8]), np.array([2.0, 2.0, np.nan]))
    >>> gvm.allocate(np.array([0, 1, 2]), budget=24).tolist()
    [8, 16, 0]
    """

    name = "gvm"
    needs_grad_norms = True  # G_i: the recipe measures it on correct samples (pre-samples, else the main rollout)

    def __init__(self, pool_size: int, alpha: float = 1e-3, beta: float = 2.0, min_n: int = 0,
                 max_n: int | None = None, estimate_every: int = 1, p_source: str = "presample",
                 posterior: Callable[[np.ndarray], np.ndarray] | None = None, presamples: int = 8,
                 predictor: BetaPredictor | None = None, p_floor: float = 0.0) -> None:
        if p_source == "posterior" and posterior is None and predictor is not None:
            posterior = predictor.mean
        _check_settings(alpha, min_n, max_n, estimate_every, p_source, posterior, presamples)
        if not 0.0 <= p_floor < 1.0:
            raise ValueError(f"gvm_p_floor={p_floor}: must be in [0, 1)")
        self.pool_size = pool_size
        self.alpha, self.beta = alpha, beta
        self.min_n, self.max_n = min_n, max_n
        self.p_floor = p_floor
        self.estimate_every = estimate_every
        self.p_source = p_source
        self.posterior = posterior
        self.predictor = predictor if predictor is not None else FlatPrior()
        # Posterior p needs no estimation pass; G then comes from the main rollouts alone.
        self.presamples = presamples if p_source != "posterior" else 0
        # The predictor's Beta as read at the start of the step (p_source=predictor): this step's own
        # pre-samples are added to it, so nothing is counted twice whenever the predictor observes them.
        self.prior_a = np.ones(pool_size)
        self.prior_b = np.ones(pool_size)
        self.step = 0
        self.successes = np.zeros(pool_size)
        self.trials = np.zeros(pool_size)
        self.p_step = np.full(pool_size, -1, dtype=np.int64)  # step of the last observation with trials
        self.grad_sum = np.zeros(pool_size)  # sum of norms over the correct samples of that step
        self.grad_count = np.zeros(pool_size)
        self.g_step = np.full(pool_size, -1, dtype=np.int64)
        self._unscored: set[int] = set()  # this batch's pre-sampled prompts with no scored pre-sample (not saved)

    def needs_estimate(self, ids: np.ndarray, step: int) -> np.ndarray:
        ids = check_ids(ids, self.pool_size)
        self.step = int(step)
        self._unscored = set()
        if self.p_source == "posterior":
            return np.zeros(ids.size, dtype=bool)
        if self.p_source == "predictor":
            a, b = self.predictor.beta(ids)
            self.prior_a[ids], self.prior_b[ids] = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        last = self.p_step[ids]
        return (last < 0) | (self.step - last >= self.estimate_every)

    def observe(self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray, grad_norms: np.ndarray) -> None:
        ids = check_ids(ids, self.pool_size)
        s, k, g = _check_observation(ids, successes, trials, grad_norms)
        seen = k > 0
        self._unscored |= set(ids[~seen].tolist())
        fresh = seen & (self.p_step[ids] != self.step)  # first observation of this step: start over
        self.successes[ids[fresh]] = 0.0
        self.trials[ids[fresh]] = 0.0
        self.successes[ids[seen]] += s[seen]
        self.trials[ids[seen]] += k[seen]
        self.p_step[ids[seen]] = self.step
        measured = np.isfinite(g)
        restart = measured & (self.g_step[ids] != self.step)
        self.grad_sum[ids[restart]] = 0.0
        self.grad_count[ids[restart]] = 0.0
        self.grad_sum[ids[measured]] += g[measured] * s[measured]
        self.grad_count[ids[measured]] += s[measured]
        self.g_step[ids[measured]] = self.step

    def estimates(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(p, G) per id as `allocate` uses them, G fallbacks applied; p is NaN where never observed."""
        ids = check_ids(ids, self.pool_size)
        return self._acceptance(ids), self._grad_norms(ids)

    def allocate(self, ids: np.ndarray, budget: int) -> np.ndarray:
        p, g = self.estimates(ids)
        # Pre-sampled, but every pre-sample went unscored (timeouts): unknown, given the fewest samples.
        unscored = np.isnan(p) & np.isin(ids, list(self._unscored))
        p = np.where(unscored, 0.0, p)
        if np.isnan(p).any():
            missing = np.asarray(ids)[np.isnan(p)][:5].tolist()
            raise ValueError(f"gvm: prompt ids {missing} have no acceptance-rate estimate; pre-sample the prompts "
                             "that needs_estimate() marks and observe() them before allocate()")
        above = p > self.p_floor
        weights = np.where(above, gvm_weights(p, g, self.alpha, self.beta), 0.0)
        return largest_remainder(weights, budget, np.where(above, self.min_n, 0), self.max_n)

    def _acceptance(self, ids: np.ndarray) -> np.ndarray:
        if self.p_source == "posterior":
            p = self.posterior(ids)
            if p is None:
                raise ValueError("gvm p_source=posterior: the selector makes no prediction; use a MoPPS selector "
                                 "or p_source=presample")
            return np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
        if self.p_source == "predictor":
            now = self.p_step[ids] == self.step  # this step's observations only (earlier ones are the predictor's)
            s, k = np.where(now, self.successes[ids], 0.0), np.where(now, self.trials[ids], 0.0)
            return (self.prior_a[ids] + s) / (self.prior_a[ids] + self.prior_b[ids] + k)
        trials = self.trials[ids]
        p = np.full(ids.size, np.nan)
        seen = trials > 0
        p[seen] = self.successes[ids[seen]] / trials[seen]
        return p

    def _grad_norms(self, ids: np.ndarray) -> np.ndarray:
        known = self.grad_count > 0
        fill = float(np.mean(self.grad_sum[known] / self.grad_count[known])) if known.any() else 1.0
        g = np.full(ids.size, fill)
        mine = known[ids]
        g[mine] = self.grad_sum[ids[mine]] / self.grad_count[ids[mine]]
        return g

    def state_dict(self) -> dict:
        arrays = ("successes", "trials", "p_step", "grad_sum", "grad_count", "g_step")
        return {"step": self.step, **{key: getattr(self, key).copy() for key in arrays}}

    def load_state_dict(self, state: dict) -> None:
        if len(state["trials"]) != self.pool_size:
            raise ValueError(f"allocator state is for a pool of {len(state['trials'])} prompts, "
                             f"this pool has {self.pool_size}")
        self.step = int(state["step"])
        for key in ("successes", "trials", "grad_sum", "grad_count"):
            setattr(self, key, np.asarray(state[key], dtype=np.float64).copy())
        for key in ("p_step", "g_step"):
            setattr(self, key, np.asarray(state[key], dtype=np.int64).copy())


def _check_settings(alpha, min_n, max_n, estimate_every, p_source, posterior, presamples) -> None:
    if alpha <= 0:
        raise ValueError(f"gvm_alpha must be positive, got {alpha}")
    if min_n < 0 or (max_n is not None and max_n < max(min_n, 1)):
        raise ValueError(f"gvm_min_samples={min_n} / gvm_max_samples={max_n}: need 0 <= min <= max "
                         "(max 0 means no cap)")
    if estimate_every < 1:
        raise ValueError(f"gvm_estimate_every must be at least 1 (re-estimate every step), got {estimate_every}")
    if p_source not in P_SOURCES:
        raise ValueError(f"gvm_p_source={p_source!r}: expected one of {', '.join(P_SOURCES)}")
    if p_source == "posterior" and posterior is None:
        raise ValueError("gvm_p_source=posterior needs a selector that predicts success rates (mopps)")
    if p_source == "predictor" and presamples < 0:
        raise ValueError(f"gvm_presamples must not be negative, got {presamples}")
    if p_source == "presample" and presamples < 1:
        raise ValueError(f"gvm_presamples must be at least 1 with p_source=presample, got {presamples}")


def _check_observation(ids, successes, trials, grad_norms):
    s = np.asarray(successes, dtype=np.float64)
    k = np.asarray(trials, dtype=np.float64)
    g = np.asarray(grad_norms, dtype=np.float64)
    if not (s.shape == k.shape == g.shape == ids.shape):
        raise ValueError(f"observe: ids, successes, trials and grad_norms must have one entry per id "
                         f"({ids.size}), got {s.shape}, {k.shape}, {g.shape}")
    if (s < 0).any() or (s > k).any():
        raise ValueError("observe: successes must lie between 0 and trials for every prompt")
    measured = ~np.isnan(g)
    if (np.isinf(g) | (g < 0)).any():
        raise ValueError("observe: gradient norms must be finite and non-negative (NaN where unknown)")
    if (measured & (s == 0)).any():
        bad = ids[measured & (s == 0)][:5].tolist()
        raise ValueError(f"observe: prompt ids {bad} have a gradient norm but no correct sample; the norm is the "
                         "mean over correct samples, so pass NaN where none was correct")
    return s, k, g
