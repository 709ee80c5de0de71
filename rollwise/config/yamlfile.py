"""YAML for configurations: no aliases or anchors, bounded in size and depth before anything reads it.

`yaml.safe_load` refuses Python objects but not aliases: a 1 KB "billion laughs" file (each level a
list of nine aliases of the one before) passes it and expands into gigabytes as soon as something
walks or formats the value, for instance an error message that prints `task_options`. A rollwise
configuration never needs an alias, so `load(text, source)` refuses every alias and anchor, text
over MAX_BYTES and nesting deeper than MAX_DEPTH, with the source and line in the message.

    >>> load("lr: 0.001\\nbetas: [0.9, 0.99]", "run.yaml")
    {'lr': 0.001, 'betas': [0.9, 0.99]}
    >>> load("a: &x [1]\\nb: *x", "run.yaml")
    Traceback (most recent call last):
    ...
    rollwise.config.yamlfile.ConfigYAMLError: run.yaml: line 1: anchors (&name) and aliases (*name) are not allowed in a rollwise configuration; write each value out
"""

from __future__ import annotations

import yaml

MAX_BYTES = 1 << 20  # a configuration is a few kilobytes
MAX_DEPTH = 32


class ConfigYAMLError(ValueError):
    """A configuration's YAML is refused; the message names the source and line."""


def _loader(source: str):
    class StrictLoader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise ConfigYAMLError(f"{source}: line {event.start_mark.line + 1}: anchors (&name) and aliases "
                                      "(*name) are not allowed in a rollwise configuration; write each value out")
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ConfigYAMLError(f"{source}: line {event.start_mark.line + 1}: nested deeper than {MAX_DEPTH} "
                                      "levels")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return StrictLoader


def load(text: str | bytes, source: str = "config"):
    """The value of one YAML document under the rules above (safe types only: no Python objects)."""
    size = len(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    if size > MAX_BYTES:
        raise ConfigYAMLError(f"{source}: {size} bytes, over the {MAX_BYTES} a configuration may have")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigYAMLError(f"{source}: not UTF-8 text (byte {exc.start + 1})") from None
    try:
        return yaml.load(text, Loader=_loader(source))  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigYAMLError(f"{source}: not valid YAML ({str(exc).splitlines()[0][:200]})") from None
