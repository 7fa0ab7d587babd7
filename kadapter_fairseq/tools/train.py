"""``kadapter-train``: ``fairseq-hydra-train`` with this package imported first.

fairseq-hydra-train composes its config before it imports ``common.user_dir``,
so configs for user components must be written inline. Importing the package
first registers the tasks, models and criterions, which makes defaults lists and
typed overrides work. It also refuses set-ups that fairseq would run wrongly
without saying so: fp16/amp without a GPU (crash or silent fp32) and several
processes without CUDA (fairseq spawns none and trains nothing).
"""
import sys

import torch

from ..errors import ConfigError


def check_runtime(cfg, cuda_available=None):
    cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    if cuda:
        return
    common = cfg.common
    if common.fp16 or common.memory_efficient_fp16:
        raise ConfigError("common.fp16 needs a CUDA GPU and none is available: on CPU use common.bf16=true (or fp32)")
    if common.amp:
        raise ConfigError("common.amp needs a CUDA GPU (on CPU it would silently run in fp32): use common.bf16=true")
    if (cfg.distributed_training.distributed_world_size or 1) > 1:
        raise ConfigError(
            f"distributed_training.distributed_world_size={cfg.distributed_training.distributed_world_size} needs CUDA GPUs: "
            "fairseq's launcher starts one process per GPU and would start none here. Use distributed_world_size=1 on CPU."
        )


def main():
    import kadapter_fairseq  # noqa: F401  (registers everything before hydra composes)
    from fairseq_cli import hydra_train

    original = hydra_train._hydra_main

    def checked(cfg, **kwargs):
        try:
            check_runtime(cfg)
        except ConfigError as e:
            sys.exit(f"kadapter-train: {e}")
        return original(cfg, **kwargs)

    hydra_train._hydra_main = checked
    hydra_train.cli_main()


if __name__ == "__main__":
    main()
