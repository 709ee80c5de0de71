"""Prior knowledge for MoPPS posteriors (METHODS.md section 2, "Prior knowledge").

`--prior` takes:
- `none`: Beta(1, 1) for every prompt;
- a JSON or JSONL file of per-prompt evidence, keyed by the user's prompt id: either counts
  (`{"id": 7, "successes": 3, "trials": 8}`) or a rate (`{"id": 7, "rate": 0.4}`); a JSON object
  `{"7": 0.4, ...}` works too. Counts give the published a = w * s + 1, b = w * f + 1 (w =
  `prior_weight`, default 3); a rate counts as one observation: a = w * rate + 1, b = w * (1 - rate) + 1;
- a run directory (or its `selector.npz`): a MoPPS run's final posteriors become this run's prior as
  they are (their pseudo-counts already carry the evidence); an offline-filter run's pass-rate
  counts get the published weighting (`rollwise train --selector offline --steps 0` measures them
  with the initial policy, the published recipe);
- `metadata`: a `pass_rate` field of each item's metadata when present (user data); otherwise the
  item's own difficulty fields, which reasoning-gym names in `metadata["difficulty"]` (for
  basic_arithmetic: num_terms, num_digits). Each field is ranked over the pool and the mean rank
  maps to a rate from 0.9 (easiest) to 0.1 (hardest), weighted as one observation. This is a weak,
  order-only prior: it knows which prompts are harder, not how hard.

Prompts the source does not mention keep Beta(1, 1).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from rollwise.pool import DataError, jsonl_rows


def build_prior(spec: str, pool, weight: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-prompt (a0, b0) arrays in pool order, or None for the uniform prior."""
    if spec in ("", "none"):
        return None
    if spec == "metadata":
        rates = metadata_rates(pool)
        return 1.0 + weight * rates, 1.0 + weight * (1.0 - rates)
    path = Path(spec)
    if path.is_dir():
        path = path / "selector.npz"
    if not path.is_file():
        raise DataError(f"prior {spec!r}: expected none, metadata, a JSON/JSONL file or a run directory with selector.npz")
    if path.suffix == ".npz":
        return _saved_prior(path, pool, weight)
    return _evidence_prior(path, pool, weight)


def _evidence_prior(path: Path, pool, weight: float) -> tuple[np.ndarray, np.ndarray]:
    rows = []
    for where, pid, successes, failures in _read_evidence(path):
        if failures < 0 or successes < 0:
            raise DataError(f"{where}: successes must lie between 0 and trials")
        rows.append((pid, 1.0 + weight * successes, 1.0 + weight * failures))
    return _in_pool_order(rows, pool, path)


def _in_pool_order(rows, pool, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(id, a, b) rows as per-prompt arrays; ids outside the pool are skipped (a bigger earlier pool is
    fine), prompts not mentioned keep Beta(1, 1), and a source that matches no prompt is an error."""
    a, b = np.ones(len(pool)), np.ones(len(pool))
    matched = 0
    for pid, pa, pb in rows:
        try:
            index = pool.index_of(int(pid))
        except KeyError:
            continue
        a[index], b[index] = pa, pb
        matched += 1
    if matched == 0:
        raise DataError(f"{path}: no prompt id in it belongs to the training pool")
    return a, b


def _read_evidence(path: Path):
    """(where, id, successes, failures) per entry of a JSON mapping or JSONL rows."""
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc.msg})") from exc
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected a JSON object of id -> rate")
        rows = [(f"{path}: id {k}", {"id": k, **(v if isinstance(v, dict) else {"rate": v})}) for k, v in data.items()]
    else:
        rows = [(f"{path}: row {n}", row) for n, row in jsonl_rows(path)]
    for where, row in rows:
        yield (where, *_parse_evidence(where, row))


def _parse_evidence(where: str, row) -> tuple[int, float, float]:
    if not isinstance(row, dict) or "id" not in row:
        raise DataError(f"{where}: expected an object with 'id' and 'rate' or 'successes' and 'trials'")
    try:
        pid = int(row["id"])
        if "rate" in row:
            rate = float(row["rate"])
            if not 0.0 <= rate <= 1.0:
                raise ValueError
            return pid, rate, 1.0 - rate
        successes, trials = float(row["successes"]), float(row["trials"])
        return pid, successes, trials - successes
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: needs 'rate' in [0, 1] or numeric 'successes' and 'trials'") from None


def _saved_prior(path: Path, pool, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """From an earlier run's selector.npz: its posteriors as they are, or its counts weighted."""
    saved = np.load(path)
    if "a" in saved and "b" in saved:
        values_a, values_b = saved["a"], saved["b"]
    elif "successes" in saved and "trials" in saved:
        values_a = 1.0 + weight * saved["successes"]
        values_b = 1.0 + weight * (saved["trials"] - saved["successes"])
    else:
        raise DataError(f"{path}: holds neither Beta posteriors nor pass-rate counts (which selector wrote it?)")
    return _in_pool_order(zip(saved["ids"], values_a, values_b), pool, path)


def metadata_rates(pool) -> np.ndarray:
    """Pass-rate guesses from item metadata (see the module docstring)."""
    items = list(pool)
    if items and all("pass_rate" in it.metadata for it in items):
        rates = np.array([float(it.metadata["pass_rate"]) for it in items])
        if ((rates < 0) | (rates > 1)).any():
            raise DataError("metadata pass_rate must lie in [0, 1]")
        return rates
    keys = sorted({k for it in items for k in (it.metadata.get("difficulty") or {})})
    keys = [k for k in keys if all(isinstance(it.metadata.get(k), (int, float)) for it in items)]
    if not keys:
        raise DataError("prior=metadata: items carry neither a pass_rate nor numeric difficulty fields")
    from scipy.stats import rankdata

    ranks = np.mean([rankdata([it.metadata[k] for it in items]) / len(items) for k in keys], axis=0)
    hardness = (ranks - ranks.min()) / max(np.ptp(ranks), 1e-12)
    return 0.9 - 0.8 * hardness


def save_posteriors(selector, pool, path: Path) -> None:
    """Save a predicting selector's state by user id (atomically): a later run's `--prior`."""
    arrays = {"ids": pool.ids, "predicted": selector.predict(np.arange(len(pool)))}
    state = selector.state_dict()
    for key in ("a", "b", "successes", "trials"):
        if key in state:
            arrays[key] = state[key]
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, path)
