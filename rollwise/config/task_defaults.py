"""rollwise's own default options of a task, filled in where a run gives none."""

DEFAULT_TASK_OPTIONS = {
    # Sums of 2-3 two-digit numbers. The tiny model warms up on 2 terms only (warmup_task_options):
    # 2-term sums start partly solved and RL sharpens them; 3-term sums start out of reach. A pool
    # with that much dead weight is where prompt selection pays (README: the default run).
    "min_terms": 2,
    "max_terms": 3,
    "min_digits": 2,
    "max_digits": 2,
    "operators": ["+"],
    "allow_parentheses": False,
    "allow_negation": False,
}

# Filled in for an empty task_options, so that `--task countdown` alone gets countdown's own defaults.
TASK_DEFAULTS = {"basic_arithmetic": DEFAULT_TASK_OPTIONS}
WARMUP_DEFAULTS = {"basic_arithmetic": {"max_terms": 2}}
