"""The run configuration: one typed, validated source of truth (`RunConfig`), its checks and named presets.

    fields.py    RunConfig: every setting, in sections that follow a step's data flow; YAML in and out
    checks.py    the one validation pass, before any pool or model is built (each chosen component's own
                 checks live in its registry entry: rollwise.registry)
    presets.py   named sets of values (`rollwise train --preset scratchpad`)
"""

from rollwise.config.fields import SECTIONS, RunConfig, coerce, flatten_sections, load_yaml
from rollwise.config.task_defaults import DEFAULT_TASK_OPTIONS

__all__ = ["DEFAULT_TASK_OPTIONS", "SECTIONS", "RunConfig", "coerce", "flatten_sections", "load_yaml"]
