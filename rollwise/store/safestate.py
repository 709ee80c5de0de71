"""Checkpoint state without pickles: tensors in safetensors, everything else in JSON.

A pickle can run any code when it is loaded, and a run directory may come from elsewhere, so a
checkpoint never holds one. `encode(state)` turns a nested state (dicts, lists, tuples, numbers,
strings, torch tensors, numpy arrays and scalars) into one safetensors file: each tensor or array
is a named tensor, and the structure is JSON in the file's metadata with tagged values where JSON
has no type of its own:

    {"$tensor": "t3"}   {"$ndarray": "t4"}   {"$tuple": [...]}   {"$float": "nan"}
    {"$np": "int64", "v": 7}   {"$dict": [[key, value], ...]}   (keys that are not plain strings)

`decode(data)` reads it back with `safetensors.torch.load` (no code runs) and strict JSON. The round
trip is exact: numpy and torch random states, optimiser state dicts with integer keys and tuples,
NaN metrics. Anything else is refused at save time with the path of the value.

    >>> import math, numpy as np, torch
    >>> state = {"rng": np.random.default_rng(0).bit_generator.state, "w": torch.ones(2), 3: (np.int64(4), float("nan"))}
    >>> back = decode(encode(state))
    >>> back["w"].tolist(), back[3][0].dtype, math.isnan(back[3][1]), back["rng"] == state["rng"]
    ([1.0, 1.0], dtype('int64'), True, True)
"""

from __future__ import annotations

import json
import math
import struct
from collections import OrderedDict

import numpy as np
import torch

FORMAT = "rollwise-checkpoint-2"
MAX_HEADER = 100 * 2**20  # safetensors' own bound on its JSON header


class StateFormatError(ValueError):
    """The state cannot be stored without pickle, or a file is not a state this module wrote."""


def encode(state) -> bytes:
    """One safetensors file (bytes) holding `state`."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors, "state")
    return save(tensors, metadata={"format": FORMAT, "state": json.dumps(tree, allow_nan=False)})


def _store(tensor: torch.Tensor, tensors: dict) -> str:
    name = f"t{len(tensors)}"
    tensors[name] = tensor.detach().to("cpu").contiguous().clone()  # clones: shared storage is not allowed
    return name


def _encode(value, tensors: dict, where: str):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, torch.Tensor):
        return {"$tensor": _store(value, tensors)}
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject or value.dtype.kind not in "biuf":
            raise StateFormatError(f"{where}: a numpy array of dtype {value.dtype} cannot be checkpointed")
        return {"$ndarray": _store(torch.from_numpy(np.ascontiguousarray(value)), tensors)}
    if isinstance(value, np.generic):
        return {"$np": value.dtype.str, "v": _encode(value.item(), tensors, where)}
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return _encode_dict(value, tensors, where)
    raise StateFormatError(f"{where}: a {type(value).__name__} cannot be checkpointed without pickle; give the "
                           "component a state_dict of numbers, strings, lists, dicts, tensors or arrays")


def _encode_dict(value: dict, tensors: dict, where: str):
    metadata = getattr(value, "_metadata", None)  # torch module state dicts carry version numbers here
    plain = metadata is None and all(isinstance(k, str) and not k.startswith("$") for k in value)
    if plain:
        return {k: _encode(v, tensors, f"{where}.{k}") for k, v in value.items()}
    out = {"$dict": [[_encode(k, tensors, where), _encode(v, tensors, f"{where}.{k}")] for k, v in value.items()]}
    if metadata is not None:
        out["meta"] = _encode(dict(metadata), tensors, f"{where}._metadata")
    return out


def _refuse_constant(name: str):
    raise StateFormatError(f"{name} is not JSON")


def header(data: bytes) -> dict:
    """The metadata of a safetensors file (parsed here: safetensors' loader does not return it)."""
    if len(data) < 8:
        raise StateFormatError("too short for a safetensors file")
    (length,) = struct.unpack("<Q", data[:8])
    if length > min(MAX_HEADER, len(data) - 8):
        raise StateFormatError("its header length is out of range; not a safetensors file")
    try:
        head = json.loads(data[8:8 + length].decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StateFormatError(f"unreadable safetensors header ({type(exc).__name__})") from None
    metadata = head.get("__metadata__") if isinstance(head, dict) else None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT or not isinstance(metadata.get("state"), str):
        raise StateFormatError(f"not a rollwise state file (no {FORMAT} metadata)")
    return metadata


def decode(data: bytes):
    """The state `encode` stored; StateFormatError for anything else (no code is ever run)."""
    from safetensors.torch import load

    metadata = header(data)
    try:
        tensors = load(data)
        tree = json.loads(metadata["state"], parse_constant=_refuse_constant)
        return _decode(tree, tensors)
    except StateFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - SafetensorError, KeyError, ...: every failure says "damaged"
        raise StateFormatError(f"damaged state ({type(exc).__name__}: {str(exc)[:200]})") from None


def _decode(node, tensors: dict):
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    tag = next((k for k in node if k.startswith("$")), None)
    if tag is None:
        return {k: _decode(v, tensors) for k, v in node.items()}
    if tag == "$tensor":
        return tensors[node[tag]]
    if tag == "$ndarray":
        return tensors[node[tag]].numpy().copy()
    if tag == "$tuple":
        return tuple(_decode(v, tensors) for v in node[tag])
    if tag == "$float":
        if node[tag] not in ("nan", "inf", "-inf"):
            raise StateFormatError(f"bad float {node[tag][:20]!r}")
        return float(node[tag])
    if tag == "$np":
        dtype = np.dtype(node[tag])
        if dtype.kind not in "biuf":
            raise StateFormatError(f"numpy scalar of dtype {dtype} is not stored by rollwise")
        return dtype.type(_decode(node["v"], tensors))
    if tag == "$dict":
        out = OrderedDict((_hashable(_decode(k, tensors)), _decode(v, tensors)) for k, v in node[tag])
        if "meta" in node:
            out._metadata = _decode(node["meta"], tensors)
        return out if "meta" in node else dict(out)
    raise StateFormatError(f"unknown tag {tag[:20]!r}")


def _hashable(key):
    if isinstance(key, (list, dict)):
        raise StateFormatError("a dict key that is a list or a dict")
    return key
