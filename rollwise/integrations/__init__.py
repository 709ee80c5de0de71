"""Plug-ins for trainers users already run.

- `rollwise.integrations.trl`: late prompt selection (MoPPS, uniform, ...) inside TRL's GRPOTrainer,
  checkpointed with TRL's checkpoints (docs/trl.md);
- `rollwise.integrations.rewards`: rollwise's guarded verifiers as TRL reward functions;
- `rollwise.integrations.selection`: the framework-free core the plug-ins share.
"""
