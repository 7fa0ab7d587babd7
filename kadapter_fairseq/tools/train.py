"""``kadapter-train``: ``fairseq-hydra-train`` with this package imported first.

fairseq-hydra-train composes its config before it imports ``common.user_dir``,
so configs for user components must be written inline. Importing the package
first registers the tasks, models and criterions, which makes defaults lists and
typed overrides work. Inside hydra's job, before fairseq starts any worker,
kadapter-train then

- checks the composed config with ``runtime_checks.check_runtime`` (fp16/amp without CUDA);
- makes ``common.user_dir`` absolute, relative to the directory the command was started in
  (``absolute_user_dir``), so that every worker imports the package even where hydra has
  changed directory (``hydra.job.chdir``).

The shipped configs set ``hydra.job.chdir: false``: every relative path (``task.data``,
``model.roberta_path``, ``checkpoint.save_dir``, ``common.user_dir``) is relative to where the
command runs, as with ``fairseq-train``, and ``hydra.run.dir`` only places hydra's own files
(``.hydra/``, ``hydra_train.log``; docs/reference/fairseq.md §3). Several processes on CPU
(``distributed_training.distributed_world_size=N common.cpu=true``, or under torchrun) go
through ``distributed.py``: see docs/distributed.md.
"""
import os
import sys

from ..errors import ConfigError, KAdapterError
from ..runtime_checks import check_runtime

PACKAGE = "kadapter_fairseq"


def _package_dir() -> str:
    import kadapter_fairseq

    # the path fairseq's import_user_module compares a user_dir against
    return list(kadapter_fairseq.__path__)[0]


def absolute_user_dir(user_dir, launch_dir):
    """``common.user_dir`` as an absolute path; a relative one is taken relative to ``launch_dir``,
    as ``fairseq-train --user-dir`` takes it relative to where it runs.

    The shipped configs name this package by its folder (``user_dir: kadapter_fairseq``): started
    from a directory without that folder, that is the installed package. A directory that is the
    installed package under another name (a symlink) is given as the package's own path, which is
    the one fairseq accepts for an already imported module."""
    if not user_dir:
        return user_dir
    path = os.path.abspath(os.path.join(launch_dir, os.path.expanduser(str(user_dir))))
    if os.path.exists(path):
        package = _package_dir()
        return package if os.path.realpath(path) == os.path.realpath(package) else path
    if not os.path.isabs(str(user_dir)) and os.path.basename(os.path.normpath(str(user_dir))) == PACKAGE:
        return _package_dir()
    raise ConfigError(f"common.user_dir={user_dir}: no such directory ({path}; relative paths are taken from where "
                      f"the command runs, {launch_dir})")


def main():
    launch_dir = os.getcwd()  # before hydra may change directory (hydra.job.chdir)
    import kadapter_fairseq  # noqa: F401  (registers everything before hydra composes)
    from omegaconf import open_dict

    from ..fairseq_compat import run_hydra_train

    def around(cfg, train, **kwargs):
        try:
            check_runtime(cfg)
            with open_dict(cfg):
                cfg.common.user_dir = absolute_user_dir(cfg.common.user_dir, launch_dir)
            return train(cfg, **kwargs)
        except KAdapterError as e:  # the project's own errors (stale cache, bad base, ...) as one line
            sys.exit(f"kadapter-train: {e}")

    try:
        run_hydra_train(around)
    except KAdapterError as e:  # a patch of fairseq that no longer takes (fairseq_compat)
        sys.exit(f"kadapter-train: {e}")


if __name__ == "__main__":
    main()
