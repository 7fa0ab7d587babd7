"""``kadapter-train``: ``fairseq-hydra-train`` with this package imported first.

fairseq-hydra-train composes its config before it imports ``common.user_dir``,
so configs for user components must be written inline. Importing the package
first registers the tasks, models and criterions, which makes defaults lists and
typed overrides work. It also checks the composed config with
``runtime_checks.check_runtime`` (fp16/amp without CUDA). Several processes on CPU
(``distributed_training.distributed_world_size=N common.cpu=true``, or under
torchrun) go through ``distributed.py``: see docs/distributed.md.
"""
import sys

from ..errors import ConfigError, KAdapterError
from ..runtime_checks import check_runtime


def main():
    import kadapter_fairseq  # noqa: F401  (registers everything before hydra composes)
    from fairseq_cli import hydra_train

    original = hydra_train._hydra_main

    def checked(cfg, **kwargs):
        try:
            check_runtime(cfg)
            return original(cfg, **kwargs)
        except KAdapterError as e:  # the project's own errors (stale cache, bad base, ...) as one line
            sys.exit(f"kadapter-train: {e}")

    hydra_train._hydra_main = checked
    hydra_train.cli_main()


if __name__ == "__main__":
    main()
