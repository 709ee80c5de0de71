"""Turning a YAML or command-line value into a configuration field's type, with a clear error."""

from __future__ import annotations

from typing import Any

from rollwise.config import yamlfile


def coerce(name: str, value: Any, typ: Any) -> Any:
    """Turn a YAML or command-line value into the field's type, with a clear error."""
    try:
        if typ is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if typ in (int, float, str):
            if typ is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return typ(value)
        if typ in (dict, list) or getattr(typ, "__origin__", None) in (dict, list):
            base = typ if typ in (dict, list) else typ.__origin__
            if isinstance(value, str):
                value = yamlfile.load(value, f"config {name}")
            if not isinstance(value, base):
                raise ValueError(value)
            return value
    except (TypeError, ValueError) as exc:
        if isinstance(exc, yamlfile.ConfigYAMLError):
            raise
        from rollwise.data.jsonl import short_repr

        raise ValueError(f"config {name}={short_repr(value)}: expected {getattr(typ, '__name__', typ)}") from exc
    return value
