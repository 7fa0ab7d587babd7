"""Refuse set-ups that fairseq would run wrongly without saying so, before it starts.

On a machine without CUDA: ``fp16`` crashes deep inside the optimizer, ``amp``
silently trains in fp32, and fairseq-train's ``--bf16`` implies ``--tpu`` and dies
looking for torch_xla. Several processes on CPU work (``distributed.py`` runs
them over gloo); more processes than cores only get a warning.

Where the checks run: ``kadapter-train`` and ``compose_train_config`` check the composed
config; fairseq's own command lines (``fairseq-train --user-dir kadapter_fairseq``) are
checked in ``distributed.call_main`` (``check_launch``), the moment they hand over their
parsed config and the last one before fairseq acts on it. Importing the package checks nothing.
"""
import argparse
import logging
import os
import sys

import torch

from .errors import ConfigError

logger = logging.getLogger(__name__)

CPU_HINT = "on CPU train in fp32, or in bf16 with kadapter-train / fairseq-hydra-train and common.bf16=true"


def check_runtime(cfg, cuda_available=None):
    """Check a composed fairseq config (``common``, ``distributed_training``)."""
    if torch.cuda.is_available() if cuda_available is None else cuda_available:
        return
    common = cfg.common
    if common.fp16 or common.memory_efficient_fp16:
        raise ConfigError(f"common.fp16 needs a CUDA GPU and none is available: {CPU_HINT}")
    if common.amp:
        raise ConfigError(f"common.amp needs a CUDA GPU (on CPU it would silently run in fp32): {CPU_HINT}")


def check_fairseq_train_argv(argv, cuda_available=None):
    """The same checks for ``fairseq-train`` flags."""
    if torch.cuda.is_available() if cuda_available is None else cuda_available:
        return
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in ("--fp16", "--memory-efficient-fp16", "--amp", "--bf16", "--memory-efficient-bf16"):
        p.add_argument(flag, action="store_true")
    a, _ = p.parse_known_args(argv)
    if a.fp16 or a.memory_efficient_fp16:
        raise ConfigError(f"--fp16 needs a CUDA GPU and none is available: {CPU_HINT}")
    if a.amp:
        raise ConfigError(f"--amp needs a CUDA GPU (on CPU it would silently run in fp32): {CPU_HINT}")
    if a.bf16 or a.memory_efficient_bf16:
        raise ConfigError(f"fairseq-train's --bf16 also switches on --tpu and fails without torch_xla: {CPU_HINT}")


def local_processes(world_size, environ=None) -> int:
    """Training processes on this machine: a launcher's per-node count, else the world size."""
    env = os.environ if environ is None else environ
    local = env.get("LOCAL_WORLD_SIZE") or env.get("SLURM_NTASKS_PER_NODE")
    return int(local) if local else int(world_size)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under SLURM or taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def warn_if_oversubscribed(world_size, environ=None, cores=None):
    """Warn when more training processes than cores share this CPU machine (called by
    ``distributed.call_main`` once the process count is known, on each machine's first process)."""
    local = local_processes(world_size, environ)
    cores = available_cores() if cores is None else cores
    if local > cores:
        message = (
            f"{local} training processes on {cores} CPU cores: each gets less than a core, so the run will be "
            "slower than with fewer processes (results are unaffected)"
        )
        logger.warning(message)
        return message
    return None


# fairseq's argparse command lines that import the package through --user-dir and launch through call_main
FAIRSEQ_ARGPARSE_CLIS = ("fairseq-train", "fairseq-validate")


def check_launch(cfg, argv=None):
    """The check for a config about to be launched (``distributed.call_main``).

    Under ``fairseq-train``/``fairseq-validate`` the refusal names the flags the user typed and
    ends the process with that one line: fairseq's command line has no later chance to refuse, and
    would otherwise print a traceback from deep inside fairseq. Library callers get a ``ConfigError``.
    """
    argv = sys.argv if argv is None else argv
    if argv and os.path.basename(argv[0]) in FAIRSEQ_ARGPARSE_CLIS:
        try:
            check_fairseq_train_argv(argv[1:])
        except ConfigError as e:
            sys.exit(f"kadapter-fairseq: {e}")
    check_runtime(cfg)
