"""Data-parallel training on CPU through fairseq's own machinery, and rank-0 helpers.

fairseq 0.12 launches, wraps and synchronises workers as if every worker owned a
CUDA device. This module is the one place in the package that knows where:

1. ``call_main`` spawns ``min(torch.cuda.device_count(), world_size)`` processes
   (0 on CPU), its single-node set-up asserts ``world_size <= device_count()``,
   and its torchrun detection computes ``device_id = rank % device_count()``
   (a ZeroDivisionError on CPU) and is skipped when ``distributed_world_size``
   is 1, the CPU default, so every torchrun process would train alone;
2. the default ``distributed_backend`` is ``nccl``, which has no CPU tensors;
3. the ``pytorch_ddp`` wrapper passes ``device_ids=[device_id]``, which
   ``DistributedDataParallel`` rejects for a module on CPU;
4. ``all_gather_list`` (logging outputs that cannot be summed) stages through a
   ``torch.cuda.ByteTensor`` and a pinned-memory buffer.

``fairseq_compat.install()`` (run when the package is imported, so in ``fairseq-train
--user-dir``, ``kadapter-train`` and every worker) puts the replacements below in place of
``fairseq.distributed.utils.call_main`` and ``all_gather_list`` and of the
``DistributedDataParallel`` name inside ``fairseq.models.distributed_fairseq_model``, and checks
that fairseq's callers still reach them. For a run on GPUs the first two hand over to fairseq's
originals and the DDP one passes the device ids through; on CPU (``common.cpu``, or no CUDA
device) training still goes through fairseq's ``distributed_main``, ``distributed_init``, Trainer
and DDP wrapper. (Resuming several processes needs one more fix, on every device: see
``fairseq_compat``.)

The helpers at the top (``is_master``, ``barrier``, ``run_on_master``,
``master_first``) are what the package uses so that files are written by one
process and the others wait where they need them.
"""
import contextlib
import logging
import os
import socket
import subprocess

import torch
import torch.distributed as dist

from . import fairseq_compat
from .errors import ConfigError, KAdapterError
from .runtime_checks import available_cores, check_launch, warn_if_oversubscribed

logger = logging.getLogger(__name__)

TORCHRUN_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK")


# ---------------------------------------------------------------------------------------------
# ranks


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank: the process group's, else a launcher's ``RANK``, else 0."""
    if is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", 0))


def get_world_size() -> int:
    if is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", 1))


def is_master() -> bool:
    return get_rank() == 0


def barrier():
    """Wait for every rank (a no-op without a process group of several ranks)."""
    if is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _share_outcome(error):
    """Rank 0 tells the others whether its part failed; a collective, so it also synchronises."""
    box = [error]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def master_first():
    """Run the block on rank 0 first, then on the other ranks.

    For a file every rank needs but only one should write: inside the block,
    build the file if it is missing (atomically), then open it. Rank 0 builds it;
    the others wait at the start of the block and find it there. If rank 0 fails,
    the others raise instead of waiting for ever.
    """
    if not (is_initialized() and dist.get_world_size() > 1):
        yield
        return
    if dist.get_rank() == 0:
        try:
            yield
        except BaseException as e:
            _share_outcome(f"{type(e).__name__}: {e}")
            raise
        _share_outcome(None)
    else:
        error = _share_outcome(None)
        if error is not None:
            raise KAdapterError(f"rank 0 failed while preparing a shared file: {error}")
        yield


def run_on_master(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on rank 0 only; every rank returns once it is done
    (with fn's result on rank 0, None elsewhere). Without a process group, ``fn``
    runs unless a launcher's ``RANK`` says this is not rank 0."""
    if not (is_initialized() and dist.get_world_size() > 1):
        return fn(*args, **kwargs) if is_master() else None
    result = None
    with master_first():
        if dist.get_rank() == 0:
            result = fn(*args, **kwargs)
    return result


# ---------------------------------------------------------------------------------------------
# CPU launch


def runs_on_cpu(cfg) -> bool:
    """The trainer will put the model on CPU (fairseq's Trainer decides the same way)."""
    common = cfg.common
    return not common.tpu and (common.cpu or not torch.cuda.is_available())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _slurm_host(env):
    """The first node of the job, as fairseq finds it: ``scontrol show hostnames``, else ``MASTER_ADDR``."""
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    if nodes is not None:
        try:
            return subprocess.check_output(["scontrol", "show", "hostnames", nodes]).split()[0].decode("utf-8")
        except FileNotFoundError:  # inside a container without the slurm tools
            pass
    return env.get("MASTER_ADDR")


def infer_cpu_init_method(dt, environ=None):
    """Fill ``distributed_training`` for a CPU run, as fairseq's ``infer_init_method`` does for GPUs.

    - launched by torchrun (``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``,
      ``RANK``): rank and world size from the environment, ``device_id`` =
      ``LOCAL_RANK``, no spawning;
    - SLURM with ``distributed_port`` set and one task per process
      (``srun --ntasks-per-node=P``): ``tcp://<first node>:<port>``, rank =
      ``SLURM_PROCID``, world = ``SLURM_NTASKS``;
    - otherwise, ``distributed_world_size > 1``: one node, that many spawned
      processes meeting at ``tcp://localhost:<distributed_port or a free port>``.

    Returns the number of processes to spawn here (0 when a launcher made them).
    """
    env = os.environ if environ is None else environ
    if dt.distributed_init_method is not None:  # given by the user, as fairseq allows
        if dt.distributed_no_spawn:
            return 0
        # fairseq would spawn one process per local GPU; here: nprocs_per_node, else all of them
        dt.distributed_num_procs = dt.nprocs_per_node if dt.nprocs_per_node > 1 else (dt.distributed_world_size or 1)
        return dt.distributed_num_procs
    world = dt.distributed_world_size or 1
    if all(k in env for k in TORCHRUN_ENV):
        launched = int(env["WORLD_SIZE"])
        if world > 1 and world != launched:
            raise ConfigError(
                f"distributed_world_size={world} but the launcher started WORLD_SIZE={launched} processes: "
                "leave distributed_world_size at 1 (it is then taken from the launcher) or make them agree"
            )
        dt.distributed_init_method = "env://"
        dt.distributed_world_size = launched
        dt.distributed_rank = int(env["RANK"])
        dt.device_id = int(env.get("LOCAL_RANK", 0))
        dt.distributed_no_spawn = True
        return 0
    ntasks = int(env.get("SLURM_NTASKS", 1))
    if dt.distributed_port > 0 and ntasks > 1:
        host = _slurm_host(env)
        if host is None:
            raise ConfigError("distributed_port is set and SLURM_NTASKS > 1, but no SLURM node list (or MASTER_ADDR) names the first node")
        if world > 1 and world != ntasks:
            raise ConfigError(
                f"distributed_world_size={world} but SLURM started {ntasks} tasks: on CPU run one task per process "
                "(srun --ntasks-per-node=P) and leave distributed_world_size at 1 or set it to the task count"
            )
        dt.distributed_init_method = f"tcp://{host}:{dt.distributed_port}"
        dt.distributed_world_size = ntasks
        dt.distributed_rank = int(env["SLURM_PROCID"])
        dt.device_id = int(env.get("SLURM_LOCALID", 0))
        dt.distributed_no_spawn = True
        return 0
    if world <= 1:
        return 0
    port = dt.distributed_port if dt.distributed_port > 0 else _free_port()
    dt.distributed_init_method = f"tcp://localhost:{port}"
    dt.distributed_num_procs = world
    return world


def prepare_cpu_run(cfg, environ=None) -> int:
    """Backend and init method for a CPU run; returns how many processes to spawn here."""
    from omegaconf import open_dict

    dt = cfg.distributed_training
    with open_dict(dt):
        if dt.distributed_backend == "nccl":  # fairseq's default; NCCL has no CPU tensors
            dt.distributed_backend = "gloo"
        return infer_cpu_init_method(dt, environ)


def set_cpu_threads(cfg):
    """Passed to fairseq's ``distributed_main`` as ``after_distributed_init_fn``: each
    worker takes its share of the cores (torch would give every worker all of them)
    unless ``OMP_NUM_THREADS`` says otherwise (torchrun sets it to 1). Processes
    started by a launcher count 1 here: SLURM's CPU binding already narrows the cores."""
    dt = cfg.distributed_training
    if "OMP_NUM_THREADS" not in os.environ:
        local = 1 if dt.distributed_no_spawn else max(1, int(dt.distributed_num_procs or 1))
        torch.set_num_threads(max(1, available_cores() // local))
    return cfg


def call_main(cfg, main, **kwargs):
    """fairseq's ``call_main``, with the CPU process count, backend and device ids. fairseq's
    command lines hand over their parsed config here: the last moment to refuse a set-up."""
    from fairseq.distributed import utils as fairseq_distributed

    check_launch(cfg)
    fairseq_compat.self_test()  # fairseq's command-line module calling this is loaded by now
    if not runs_on_cpu(cfg):
        return fairseq_compat.fairseq_original("call_main")(cfg, main, **kwargs)
    dt = cfg.distributed_training
    spawn = prepare_cpu_run(cfg)
    if dt.distributed_init_method is None:  # one process
        return main(cfg, **kwargs)
    if int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", 0))) == 0:
        warn_if_oversubscribed(spawn or 1)
    logger.info(
        f"CPU data-parallel training: world size {dt.distributed_world_size}, backend {dt.distributed_backend}, "
        f"{f'spawning {spawn} processes' if spawn else 'processes launched by ' + ('torchrun' if 'LOCAL_RANK' in os.environ else 'SLURM')}, "
        f"init {dt.distributed_init_method}"
    )
    kwargs["after_distributed_init_fn"] = set_cpu_threads
    if spawn:
        start_rank = dt.distributed_rank
        dt.distributed_rank = None  # fairseq's distributed_main assigns start_rank + i
        kwargs["start_rank"] = start_rank
        # fork where the platform has it: the workers inherit the imported fairseq and
        # package instead of importing them again (seconds each on a small CPU machine);
        # nothing has touched CUDA or torch's thread pools in this process yet
        method = "fork" if "fork" in torch.multiprocessing.get_all_start_methods() else "spawn"
        torch.multiprocessing.start_processes(
            fairseq_distributed.distributed_main, args=(main, cfg, kwargs), nprocs=spawn, join=True, start_method=method
        )
    else:
        fairseq_distributed.distributed_main(dt.device_id, main, cfg, kwargs)


# ---------------------------------------------------------------------------------------------
# DDP wrapper and collectives


def _on_cpu(module) -> bool:
    p = next(module.parameters(), None)
    return p is None or p.device.type == "cpu"


def cpu_aware_ddp(module, device_ids=None, output_device=None, **kwargs):
    """``DistributedDataParallel`` as fairseq's wrapper builds it; for a module on CPU
    the device ids are dropped (DDP accepts them only for a single-GPU module)."""
    from torch.nn.parallel import DistributedDataParallel

    if _on_cpu(module):
        device_ids = output_device = None
    return DistributedDataParallel(module, device_ids=device_ids, output_device=output_device, **kwargs)


def all_gather_list(data, group=None, max_size=16384):
    """fairseq's ``all_gather_list`` (arbitrary picklable data from every rank, in rank
    order); on a CPU backend it goes through ``torch.distributed.all_gather_object``
    instead of a CUDA byte tensor staged in pinned memory."""
    from fairseq import utils
    from fairseq.distributed import utils as fairseq_distributed

    if group is None:
        group = fairseq_distributed.get_global_group()
    if torch.cuda.is_available() and dist.get_backend(group) == "nccl":
        return fairseq_compat.fairseq_original("all_gather_list")(data, group=group, max_size=max_size)
    out = [None] * fairseq_distributed.get_world_size(group)
    dist.all_gather_object(out, utils.move_to_cpu(data), group=group)
    return out
