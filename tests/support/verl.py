"""Shared by the verl plug-in tests (tests/integrations): a tiny pool in verl's layout, the example config
composed on it, and verl's own dataloader over the plug-in's dataset (built as verl's v1 trainer builds it)."""

from __future__ import annotations

from pathlib import Path

from rollwise.integrations.verl_data import verl_rows, write_parquet
from rollwise.data.pool import PoolItem, PromptPool
from tests.support import REPO

EXAMPLE = REPO / "examples" / "verl"
POOL = 24
BATCH = 4
N = 4


def write_data_dir(root: Path) -> Path:
    """A pool of sums 'i + 1' (rows in id order) and a held-out file, in verl's layout (the `data_dir` fixture:
    tests/integrations/conftest.py)."""
    train = PromptPool([PoolItem(i, f"{i} + 1 =", str(i + 1), {"i": i}) for i in range(POOL)], "basic_arithmetic", "t")
    held = PromptPool([PoolItem(i, f"{i} + 2 =", str(i + 2)) for i in range(4)], "basic_arithmetic", "v")
    write_parquet(verl_rows(train), root / "train.parquet")
    write_parquet(verl_rows(held), root / "val.parquet")
    return root


def compose(data_dir, *overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(EXAMPLE), version_base=None):
        return hydra_compose(config_name="rollwise_grpo", overrides=[
            f"data.train_files={data_dir / 'train.parquet'}", f"data.val_files={data_dir / 'val.parquet'}",
            f"data.train_batch_size={BATCH}", f"actor_rollout_ref.rollout.n={N}", "data.shuffle=false",
            f"+data.cache_dir={data_dir / 'cache'}", f"trainer.default_local_dir={data_dir / 'checkpoints'}",
            *overrides])


def tokenizer():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"<pad>": 0, "<eos>": 1, "<unk>": 2}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def verl_dataloader(cfg, train=True):
    """The dataset and dataloader exactly as verl's v1 trainer builds them (`PPOTrainer._init_dataloader`)."""
    from torchdata.stateful_dataloader import StatefulDataLoader
    from verl.trainer.ppo.utils import create_rl_dataset, create_rl_sampler
    from verl.utils.dataset.rl_dataset import collate_fn

    files = cfg.data.train_files if train else cfg.data.val_files
    dataset = create_rl_dataset(files, cfg.data, tokenizer(), None, is_train=train)
    loader = StatefulDataLoader(dataset=dataset, batch_size=cfg.data.train_batch_size,
                                num_workers=cfg.data.dataloader_num_workers, drop_last=True, collate_fn=collate_fn,
                                sampler=create_rl_sampler(cfg.data, dataset))
    return dataset, loader


def batches(loader):
    """Batches forever, restarting the epoch the way verl's `_fetch_one_gen_batch` does."""
    while True:
        yield from loader


def solved(pid: int, session: int) -> float:
    """The outcome rule the tests feed back: multiples of 3 always right, others right on even sessions of even ids."""
    return 1.0 if pid % 3 == 0 or (pid % 2 == 0 and session % 2 == 0) else 0.0
