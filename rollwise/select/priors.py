"""Prior knowledge for MoPPS posteriors (docs/methods.md section 2, "Prior knowledge").

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

Ids are matched by value, and an id may mean another prompt in another data set. So selector.npz
stores each prompt's content hash (`PromptPool.item_hashes`, 64 bits of a SHA-256 of prompt and
answer) and a prior file row may carry one (`"hash": "<16 hex digits>"`, `f"{item_hash(p, a):016x}"`);
a differing hash is an error naming the id. A source without hashes still works, with a warning that
identity was not checked.
"""

from __future__ import annotations

import io
import logging
import math
import re
import zipfile
from pathlib import Path

import numpy as np

from rollwise.store import safefiles
from rollwise.data.jsonl import DataError, jsonl_rows, parse_json, short_repr
from rollwise.data.pool import parse_id

log = logging.getLogger(__name__)

# Evidence larger than this is no evidence a run could have gathered (a billion trials of one prompt),
# and Beta pseudo-counts this large stop any posterior from moving: refused, with finite values only,
# so that a prior of successes = trials = 1e308 cannot make infinite counts and NaN predictions.
MAX_TRIALS = 1e9


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
    ids, a, b, hashes = [], [], [], []
    for where, pid, successes, failures, digest in _read_evidence(path):
        if failures < 0 or successes < 0:
            raise DataError(f"{where}: successes must lie between 0 and trials")
        ids.append(pid)
        a.append(1.0 + weight * successes)
        b.append(1.0 + weight * failures)
        hashes.append(digest)
    has_hash = np.array([h is not None for h in hashes], dtype=bool)
    hashes = np.array([h or 0 for h in hashes], dtype=np.uint64)
    return _in_pool_order(np.array(ids, dtype=np.int64), np.array(a), np.array(b), pool, path, hashes, has_hash)


def _in_pool_order(ids, a, b, pool, path: Path, hashes=None, has_hash=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-id values as per-prompt arrays; ids outside the pool are skipped (a bigger earlier pool is
    fine), prompts not mentioned keep Beta(1, 1), and a source that matches no prompt is an error.

    `hashes` (uint64 per id) are checked against the pool where `has_hash` says a row carries one.
    """
    unique, counts = np.unique(ids, return_counts=True)
    if len(unique) < len(ids):
        raise DataError(f"{path}: prompt id {unique[counts > 1][0]} appears more than once")
    index = pool.indices_of(ids)
    found = index >= 0
    if not found.any():
        raise DataError(f"{path}: no prompt id in it belongs to the training pool")
    if hashes is None:
        hashes, has_hash = np.zeros(len(ids), dtype=np.uint64), np.zeros(len(ids), dtype=bool)
    elif has_hash is None:
        has_hash = np.ones(len(ids), dtype=bool)
    _check_identity(path, pool, ids[found], index[found], hashes[found], has_hash[found])
    out_a, out_b = np.ones(len(pool)), np.ones(len(pool))
    out_a[index[found]], out_b[index[found]] = a[found], b[found]
    return out_a, out_b


def _check_identity(path: Path, pool, ids, index, hashes, checked) -> None:
    """DataError at the first checked id whose prompt or answer differs; a warning for unchecked ids."""
    differ = np.flatnonzero(checked & (pool.item_hashes()[index] != hashes))
    if len(differ):
        raise DataError(
            f"{path}: prompt id {ids[differ[0]]} has another prompt or answer in this pool than where the prior "
            f"was measured ({len(differ)} of {int(checked.sum())} checked ids differ): the ids name other data. "
            "Pass the run directory or file made with this pool, or --prior none")
    if not checked.all():
        log.warning("%s: %d of %d matched prompt ids carry no content hash; identity not checked for them "
                    "(matched by id only)", path, int((~checked).sum()), len(ids))


def _read_evidence(path: Path):
    """(where, id, successes, failures, hash or None) per entry of a JSON mapping or JSONL rows."""
    if path.suffix == ".json":
        try:
            raw = path.read_bytes()
            data = parse_json(raw.removeprefix(b"\xef\xbb\xbf").decode("utf-8"), str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: unreadable ({exc})") from None
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected a JSON object of id -> rate")
        rows = [(f"{path}: id {short_repr(k)}", _mapping_row(k, v, path)) for k, v in data.items()]
    else:
        rows = ((f"{path}: row {n}", row) for n, row in jsonl_rows(path))
    for where, row in rows:
        yield (where, *_parse_evidence(where, row))


def _mapping_row(key: str, value, path: Path) -> dict:
    """`"7": 0.4` or `"7": {"rate": 0.4, "hash": ...}` as a row with an id."""
    if not re.fullmatch(r"[0-9]{1,19}", key):
        raise DataError(f"{path}: key {short_repr(key)} is not a prompt id (a non-negative integer)")
    return {**(value if isinstance(value, dict) else {"rate": value}), "id": int(key)}


def _parse_evidence(where: str, row) -> tuple[int, float, float, int | None]:
    if not isinstance(row, dict) or "id" not in row:
        raise DataError(f"{where}: expected an object with 'id' and 'rate' or 'successes' and 'trials'")
    pid = parse_id(row["id"], f"{where}: column 'id'")
    digest = _parse_hash(row.get("hash"), where)
    try:
        if "rate" in row:
            rate = float(row["rate"])
            if not 0.0 <= rate <= 1.0:
                raise ValueError
            return pid, rate, 1.0 - rate, digest
        successes, trials = float(row["successes"]), float(row["trials"])
        if not (math.isfinite(successes) and math.isfinite(trials) and 0 <= trials <= MAX_TRIALS):
            raise DataError(f"{where}: 'trials' must be a finite number between 0 and {MAX_TRIALS:.0e}, got "
                            f"{short_repr(row['trials'])} (and 'successes' finite)")
        return pid, successes, trials - successes, digest
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{where}: needs 'rate' in [0, 1] or numeric 'successes' and 'trials'") from None


def _parse_hash(value, where: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F]{16}", value):
        raise DataError(f"{where}: column 'hash' must be 16 hex digits (f\"{{rollwise.data.pool.item_hash(prompt, "
                        f"answer):016x}}\"), got {short_repr(value)}")
    return int(value, 16)


def _saved_prior(path: Path, pool, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """From an earlier run's selector.npz: its posteriors as they are, or its counts weighted."""
    try:
        saved = dict(np.load(path, allow_pickle=False))
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: unreadable ({exc}); is the earlier run's directory complete?") from None
    if "ids" not in saved:
        raise DataError(f"{path}: has no 'ids' array; it was not written by rollwise")
    if "a" in saved and "b" in saved:
        values_a, values_b = saved["a"], saved["b"]
    elif "successes" in saved and "trials" in saved:
        values_a = 1.0 + weight * saved["successes"]
        values_b = 1.0 + weight * (saved["trials"] - saved["successes"])
    else:
        raise DataError(f"{path}: holds neither Beta posteriors nor pass-rate counts (which selector wrote it?)")
    _check_counts(path, values_a, values_b, len(saved["ids"]))
    ids, hashes = saved["ids"].astype(np.int64), saved.get("hashes")
    if hashes is not None and hashes.shape != ids.shape:
        raise DataError(f"{path}: {len(hashes)} content hashes for {len(ids)} ids; the file is damaged")
    return _in_pool_order(ids, values_a, values_b, pool, path, None if hashes is None else hashes.astype(np.uint64))


def _check_counts(path: Path, a: np.ndarray, b: np.ndarray, n: int) -> None:
    """Beta parameters as a prior may hold them: finite, at least 1e-6, at most MAX_TRIALS, one per id."""
    for name, values in (("a", a), ("b", b)):
        values = np.asarray(values)
        if values.shape != (n,) or values.dtype.kind not in "iuf":
            raise DataError(f"{path}: '{name}' must hold one number per id ({n}); the file is damaged")
        bad = np.flatnonzero(~np.isfinite(values) | (values < 1e-6) | (values > MAX_TRIALS + 1))
        if len(bad):
            raise DataError(f"{path}: '{name}' of id at position {bad[0]} is {values[bad[0]]!r}; a prior needs finite "
                            f"Beta counts between 1e-6 and {MAX_TRIALS:.0e} (was the earlier run's selector broken?)")


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


def save_posteriors(source, pool, path: Path, counts=None) -> None:
    """Save each prompt's Beta by user id with content hashes (atomically): a later run's `--prior`.

    `source` is a predictor or a selector with `beta(ids)` (a PredictiveSelector), or an older selector
    whose state holds `a` / `b`; `counts` an offline filter whose pass-rate counts (`successes`,
    `trials`) are saved too (a prior with the published weighting reads them first).
    """
    everything = np.arange(len(pool))
    arrays = {"ids": pool.ids, "hashes": pool.item_hashes()}
    if hasattr(source, "beta"):  # a predictor (or a selector over one): its current Beta per prompt
        arrays["a"], arrays["b"] = source.beta(everything)
    else:
        state = source.state_dict()
        arrays.update({key: state[key] for key in ("a", "b", "successes", "trials") if key in state})
    arrays["predicted"] = arrays["a"] / (arrays["a"] + arrays["b"]) if "a" in arrays else source.predict(everything)
    extra = counts.state_dict() if counts is not None else {}
    arrays.update({key: extra[key] for key in ("successes", "trials") if key in extra})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    safefiles.write_atomic(path, buffer.getvalue())  # never through a link in the run directory
