"""Plug-ins for trainers users already run.

- `rollwise.integrations.trl`: late prompt selection (MoPPS, uniform, ...) inside TRL's GRPOTrainer,
  checkpointed with TRL's checkpoints (docs/trl.md);
- `rollwise.integrations.rewards`: rollwise's guarded verifiers as TRL reward functions;
- `rollwise.integrations.verl`: MoPPS selection and GVM budgets inside verl's v1 trainer (a dataset, a
  replay buffer and a reward function loaded from verl's config; docs/verl.md), with
  `rollwise.integrations.verl_data` writing reasoning-gym tasks as verl parquet files;
- `rollwise.integrations.selection`, `rollwise.integrations.group_selection`: the framework-free cores
  the plug-ins share (one choice per generation for TRL; choices per row, outcomes per group for verl).
"""
