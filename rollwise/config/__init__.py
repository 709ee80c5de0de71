"""The run configuration: one typed, validated source of truth (`RunConfig`), its checks and named presets.

    fields.py    RunConfig: every setting, in sections that follow a step's data flow; YAML in and out
    checks.py    what each section allows, checked before any model is loaded
    presets.py   named sets of values (`rollwise train --preset scratchpad`)
"""

from rollwise.config.fields import (DEFAULT_TASK_OPTIONS, GROUP_RELATIVE, SECTIONS, RunConfig, coerce,
                                    flatten_sections, load_yaml)

__all__ = ["DEFAULT_TASK_OPTIONS", "GROUP_RELATIVE", "SECTIONS", "RunConfig", "coerce", "flatten_sections",
           "load_yaml"]
