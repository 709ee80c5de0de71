"""Registries of interchangeable components: each entry owns its name, its settings' section and checks.

A registry (selectors, filters, allocators, algorithms, rollout modes, predictors) is declared in a
light module of its package (`rollwise/select/registry.py`, ...) that imports neither torch nor a
model, so that reading and validating a configuration stays fast:

    SELECTORS = Registry("selector", section="select")
    SELECTORS.add("mopps", "rollwise.select:build_mopps", "MoPPS: Top-B Thompson sampling ...", check=_mopps)

`RunConfig` takes each field's allowed values from its registry (`choices=SELECTORS`), and its one
validation pass (`rollwise.config.checks`) runs, before any pool or model is built, each registry's
check of its settings' values and the check of the chosen entry (what it needs of the rest). `Registry.build(name, ...)` imports the entry's builder only when a run is built. A
new component is its own module, one `add` line and its settings in its config section.

    >>> demo = Registry("thing", section="run")
    >>> demo.add("plain", "builtins:dict", "a plain thing")
    >>> demo.names, "plain" in demo
    (('plain',), True)
    >>> demo.build("plain", a=1)
    {'a': 1}
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Entry:
    name: str
    builder: str  # "module:function", imported at build time
    help: str
    check: Callable | None = None  # check(cfg): raise ValueError naming the field, before anything is built


class Registry:
    """Named entries of one kind of component; iterating gives the names (so it can serve as `choices`)."""

    def __init__(self, kind: str, section: str, settings_check: Callable | None = None) -> None:
        """`settings_check(cfg)` checks the values of the settings the entries share, whichever is chosen
        (a bad value is an error even before its component is switched on)."""
        self.kind, self.section = kind, section
        self.settings_check = settings_check
        self.entries: dict[str, Entry] = {}

    def add(self, name: str, builder: str, help: str, check: Callable | None = None) -> None:
        if name in self.entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self.entries[name] = Entry(name, builder, help, check)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def __iter__(self):
        return iter(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def entry(self, name: str) -> Entry:
        if name not in self.entries:
            raise ValueError(f"{self.kind}={name!r}: expected one of {', '.join(self.entries)}")
        return self.entries[name]

    def check(self, name: str, cfg) -> None:
        """The shared settings' values, then what the chosen entry needs of the configuration."""
        for check in (self.settings_check, self.entry(name).check):
            if check is not None:
                check(cfg)

    def build(self, name: str, *args, **kwargs):
        module, function = self.entry(name).builder.split(":")
        return getattr(importlib.import_module(module), function)(*args, **kwargs)

    def describe(self) -> str:
        """`name: help` per entry (for --help texts)."""
        return "; ".join(f"{e.name}: {e.help}" for e in self.entries.values())
