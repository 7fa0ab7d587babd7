"""Data-parallel training on CPU over gloo, through fairseq's own launcher, Trainer and DDP wrapper.

- equivalence: 2 processes with batch B end with the same adapter, fusion and head as 1 process
  with batch 2B (same seed, dropout off), and the frozen base is bit-identical in both;
- once: under DDP each adapter file is written by rank 0 alone, once per checkpoint save;
- kill and resume: SIGKILL mid-epoch, resume from checkpoint_last.pt, same end state as a run
  that was never killed (1 and 2 processes), with the same losses and LR after the resume;
- fairseq-train (spawned workers) and torchrun + kadapter-train both train on every rank;
- atomic adapter files and checkpoint copies, and the CPU launch configuration, in-process.

The runs go through a small driver (written below) that calls fairseq-train's or
kadapter-train's entry point unchanged and records, from inside every worker, its update
count and its adapter-file writes; it can also SIGKILL the whole process group at an update.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import pytest
import torch

from kadapter_fairseq.checkpoint_utils import load_adapter_file
from kadapter_fairseq.tools.distributed_bench import make_relation_data, train_command

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
BATCH = 2  # per process; the single-process reference takes 2 * BATCH
MAX_UPDATE = 8  # 14 examples: 4 updates per epoch (the last batch is short), 2 epochs
SAVE_EVERY = 2  # checkpoints at 2, 4 (end of epoch 1), 6 and 8
KILL_AT = 7  # mid-epoch 2: checkpoint_last.pt holds update 6
TOL = 1e-5

DRIVER = '''
"""Runs an entry point as its console script would; hooks installed at import act in every worker.
The package itself is left for the entry point to import (--user-dir / common.user_dir)."""
import os
import signal
import sys

import torch.distributed as dist
from fairseq.trainer import Trainer


def rank():
    return dist.get_rank() if dist.is_initialized() else 0


def record(name, line):
    with open(os.path.join(os.environ["KD_RECORD"], name), "a") as f:
        f.write(line + "\\n")


def count_adapter_writes():
    ku = sys.modules["kadapter_fairseq.checkpoint_utils"]  # imported by the entry point by now
    if getattr(ku.save_adapter_file, "counted", False):
        return
    save = ku.save_adapter_file

    def save_adapter_file(path, *args, **kwargs):
        record("adapter_writes", f"{os.getpid()} {rank()} {path}")
        return save(path, *args, **kwargs)

    save_adapter_file.counted = True
    ku.save_adapter_file = save_adapter_file


_train_step = Trainer.train_step


def train_step(self, samples, raise_oom=False):
    count_adapter_writes()
    out = _train_step(self, samples, raise_oom)
    n = self.get_num_updates()
    record(f"rank{rank()}.updates", str(n))
    if os.environ.get("KD_KILL_AT") and n == int(os.environ["KD_KILL_AT"]) and rank() == 0:
        os.killpg(os.getpgid(0), signal.SIGKILL)  # the whole run, as a node failure would
    return out


Trainer.train_step = train_step

if __name__ == "__main__":
    prog = sys.argv.pop(1)
    sys.argv[0] = os.path.join(os.path.dirname(sys.executable), prog)
    if prog == "fairseq-train":
        from fairseq_cli.train import cli_main

        cli_main()
    elif prog == "fairseq-hydra-train":
        from fairseq_cli.hydra_train import cli_main

        cli_main()
    else:
        from kadapter_fairseq.tools.train import main

        main()
'''


@pytest.fixture(scope="module")
def setup(tiny_base, tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    data = make_relation_data(tiny_base, str(root / "data"), n_train=14, n_valid=4)
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    return {"root": root, "data": data, "base": tiny_base, "driver": str(driver), "runs": {}}


def launch(setup, name, world_size, batch, kill_at=None, save_dir=None, prefix=(), program=None, timeout=400, cwd=None):
    """Run the driver (in ``cwd``, default the setup's root); returns (returncode, log, record dir, save dir)."""
    record = setup["root"] / f"{name}.record"
    record.mkdir(exist_ok=True)
    save = save_dir or setup["root"] / f"{name}.ckpt"
    if program is None:
        program = ["fairseq-train"] + train_command(setup["data"], setup["base"], save, batch, world_size=world_size,
                                                    max_update=MAX_UPDATE, save_interval_updates=SAVE_EVERY)
    env = dict(os.environ, KD_RECORD=str(record), OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    env.pop("KD_KILL_AT", None)
    if kill_at:
        env["KD_KILL_AT"] = str(kill_at)
    # torchrun starts the driver with this interpreter itself
    proc = subprocess.run([*(prefix or [sys.executable]), setup["driver"], *program], cwd=cwd or setup["root"], env=env,
                          capture_output=True, text=True, timeout=timeout, start_new_session=True)
    return proc.returncode, proc.stdout + proc.stderr, record, save


def reference(setup, world_size):
    """The uninterrupted run with ``world_size`` processes (batch 2B / world_size each), run once."""
    runs = setup["runs"]
    if world_size not in runs:
        code, log, record, save = launch(setup, f"ref{world_size}", world_size, 2 * BATCH // world_size)
        assert code == 0, log[-4000:]
        runs[world_size] = {"log": log, "record": record, "save": save, "state": load(save / "checkpoint_last.pt")}
    return runs[world_size]


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def trainable(state):
    return {k: v for k, v in state["model"].items() if not k.startswith("encoder.") and v.is_floating_point()}


def max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def inner_stats(log):
    """``{num_updates: (loss, lr)}`` from fairseq's per-update log lines (rank 0's, aggregated over ranks)."""
    out = {}
    for m in re.finditer(r"loss=([0-9.]+),.*?num_updates=([0-9]+), lr=([0-9.e-]+)", log):
        out[int(m.group(2))] = (float(m.group(1)), float(m.group(3)))
    return out


def updates(record, rank):
    path = record / f"rank{rank}.updates"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


# ------------------------------------------------------------------------------------------------


def test_two_processes_match_one_process_with_twice_the_batch(setup):
    one, two = reference(setup, 1), reference(setup, 2)
    assert "CPU data-parallel training: world size 2, backend gloo, spawning 2 processes" in two["log"]
    # both ranks trained every update; one process did the same number of updates
    assert updates(two["record"], 0) == updates(two["record"], 1) == list(range(1, MAX_UPDATE + 1))
    assert updates(one["record"], 0) == list(range(1, MAX_UPDATE + 1))
    a, b = trainable(one["state"]), trainable(two["state"])
    assert a and max_diff(a, b) < TOL
    original = load(os.path.join(setup["base"], "model.pt"))["model"]
    base_keys = [k for k in original if k.startswith("encoder.")]
    for k in base_keys:
        assert torch.equal(one["state"]["model"][k], original[k]) and torch.equal(two["state"]["model"][k], original[k]), k
    # the adapters kept moving after update 2: the comparison is not between untrained copies
    assert max_diff(a, trainable(load(one["save"] / "checkpoint_1_2.pt"))) > 1e-4
    # the same losses, update for update (logged by rank 0, summed over ranks by fairseq)
    s1, s2 = inner_stats(one["log"]), inner_stats(two["log"])
    assert sorted(s1) == sorted(s2) == list(range(1, MAX_UPDATE + 1))
    for n in s1:
        assert s1[n] == pytest.approx(s2[n], abs=2e-3), n


def test_adapter_files_written_once_per_save_by_rank_zero(setup):
    one, two = reference(setup, 1), reference(setup, 2)
    saves = MAX_UPDATE // SAVE_EVERY
    for run in (one, two):
        writes = [line.split() for line in (run["record"] / "adapter_writes").read_text().splitlines()]
        assert len(writes) == saves, writes  # fac.pt, once per checkpoint save
        assert {rank for _, rank, _ in writes} == {"0"} and len({pid for pid, _, _ in writes}) == 1
        assert {os.path.basename(path) for _, _, path in writes} == {"fac.pt"}
        assert not [f for f in os.listdir(run["save"] / "adapters") if f.endswith(".tmp")]
    fa = load_adapter_file(one["save"] / "adapters" / "fac.pt")["adapters"]["fac"][1]
    fb = load_adapter_file(two["save"] / "adapters" / "fac.pt")["adapters"]["fac"][1]
    assert max_diff(fa, fb) < TOL
    # the file holds the final adapter of the run
    final = {k[len("adapters.fac."):]: v for k, v in two["state"]["model"].items() if k.startswith("adapters.fac.")}
    assert max_diff(fb, final) == 0


@pytest.mark.parametrize("world_size", [1, 2])
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(setup, world_size):
    ref = reference(setup, world_size)
    name = f"killed{world_size}"
    code, log, record, save = launch(setup, name, world_size, 2 * BATCH // world_size, kill_at=KILL_AT)
    assert code == -signal.SIGKILL, log[-3000:]
    assert updates(record, 0)[-1] == KILL_AT
    last = load(save / "checkpoint_last.pt")
    assert last["optimizer_history"][-1]["num_updates"] == KILL_AT - 1
    assert last["extra_state"]["train_iterator"]["iterations_in_epoch"] == (KILL_AT - 1) % 4  # mid-epoch
    load_adapter_file(save / "adapters" / "fac.pt")  # what a kill leaves is complete

    code, log, record, save = launch(setup, name, world_size, 2 * BATCH // world_size, save_dir=save)
    assert code == 0, log[-4000:]
    assert f"Loaded checkpoint {save / 'checkpoint_last.pt'} (epoch 2 @ {KILL_AT - 1} updates)" in log
    for rank in range(world_size):  # the kill's updates, then the resumed ones from update 7 on
        assert updates(record, rank)[-(MAX_UPDATE - KILL_AT + 1):] == list(range(KILL_AT, MAX_UPDATE + 1))
    # same data order and learning rate after the resume: same loss and lr at updates 7 and 8
    resumed, uninterrupted = inner_stats(log), inner_stats(ref["log"])
    for n in range(KILL_AT, MAX_UPDATE + 1):
        assert resumed[n] == pytest.approx(uninterrupted[n], abs=1e-6), n
    state = load(save / "checkpoint_last.pt")
    assert state["optimizer_history"][-1]["num_updates"] == MAX_UPDATE
    assert max_diff(trainable(state), trainable(ref["state"])) < TOL


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_torchrun_with_kadapter_train_trains_on_every_rank(setup):
    # the config's own relative user_dir (kadapter_fairseq), started where no such folder is, hydra's files elsewhere
    save, hydra_dir = setup["root"] / "torchrun.ckpt", setup["root"] / "torchrun.hydra"
    program = ["kadapter-train", "--config-dir", os.path.join(REPO, "configs"), "--config-name", "relation_pretrain_cpu",
               f"task.data={setup['data']}", f"model.roberta_path={setup['base']}", f"checkpoint.save_dir={save}",
               "optimization.max_update=4", "optimization.max_epoch=0", "dataset.batch_size=2", "dataset.disable_validation=true",
               "common.log_interval=1", f"hydra.run.dir={hydra_dir}"]
    prefix = [os.path.join(BIN, "torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port())]
    code, log, record, _ = launch(setup, "torchrun", 2, 2, save_dir=save, prefix=prefix, program=program)
    assert code == 0, log[-4000:]
    assert "CPU data-parallel training: world size 2, backend gloo, processes launched by torchrun" in log
    assert (hydra_dir / ".hydra" / "config.yaml").is_file()
    assert updates(record, 0) == updates(record, 1) == [1, 2, 3, 4]
    writes = [line.split() for line in (record / "adapter_writes").read_text().splitlines()]
    assert writes and {rank for _, rank, _ in writes} == {"0"}
    assert load(save / "checkpoint_last.pt")["optimizer_history"][-1]["num_updates"] == 4


def train_in_launch_dir(setup, name, launch_dir, hydra_dir, world_size, max_update, program="kadapter-train"):
    """kadapter-train (or fairseq-hydra-train) with the shipped CPU config, every path relative to
    ``launch_dir`` (the config's own ``common.user_dir: kadapter_fairseq`` included), hydra's run
    directory elsewhere."""
    overrides = ["task.data=data", "model.roberta_path=base", "checkpoint.save_dir=ckpt",
                 f"optimization.max_update={max_update}", "optimization.max_epoch=0", f"dataset.batch_size={2 * BATCH // world_size}",
                 "dataset.disable_validation=true", "common.log_interval=1", f"hydra.run.dir={hydra_dir}",
                 f"distributed_training.distributed_world_size={world_size}", "common.cpu=true"]
    command = [program, "--config-dir", os.path.join(REPO, "configs"), "--config-name", "relation_pretrain_cpu", *overrides]
    return launch(setup, name, world_size, None, program=command, cwd=launch_dir)


def launch_dir_with_inputs(setup, name):
    """A directory holding the run's inputs under relative names (and no kadapter_fairseq folder)."""
    launch_dir = setup["root"] / name
    launch_dir.mkdir()
    os.symlink(setup["data"], launch_dir / "data")
    os.symlink(setup["base"], launch_dir / "base")
    return launch_dir


@pytest.mark.parametrize("world_size", [1, 2])
def test_hydra_run_dir_elsewhere_trains_and_resumes(setup, world_size):
    """``hydra.run.dir=DIR`` (how fairseq users keep runs apart) places hydra's files only: the
    relative paths of the config and the command line mean what they mean where the command runs,
    in every worker, and a second run with more updates resumes from checkpoint_last.pt."""
    launch_dir = launch_dir_with_inputs(setup, f"launch{world_size}")
    hydra_dir = setup["root"] / f"hydra_run{world_size}"
    code, log, record, _ = train_in_launch_dir(setup, f"rundir{world_size}", launch_dir, hydra_dir, world_size, 2)
    assert code == 0, log[-4000:]
    if world_size == 2:
        assert "CPU data-parallel training: world size 2, backend gloo, spawning 2 processes" in log
    for rank in range(world_size):
        assert updates(record, rank) == [1, 2]
    last = launch_dir / "ckpt" / "checkpoint_last.pt"
    state = load(last)
    assert state["optimizer_history"][-1]["num_updates"] == 2
    # what every worker imported: the installed package, by its absolute path
    assert state["cfg"]["common"]["user_dir"] == os.path.join(REPO, "kadapter_fairseq")
    assert (hydra_dir / ".hydra" / "config.yaml").is_file() and (hydra_dir / "hydra_train.log").is_file()
    assert not (hydra_dir / "ckpt").exists() and sorted(os.listdir(launch_dir)) == ["base", "ckpt", "data"]

    code, log, record, _ = train_in_launch_dir(setup, f"rundir{world_size}.resumed", launch_dir, hydra_dir, world_size, 4)
    assert code == 0, log[-4000:]
    assert "Loaded checkpoint ckpt/checkpoint_last.pt (epoch 1 @ 2 updates)" in log
    for rank in range(world_size):
        assert updates(record, rank) == [3, 4]
    assert load(last)["optimizer_history"][-1]["num_updates"] == 4


def test_fairseq_hydra_train_with_hydra_run_dir_elsewhere(setup):
    """fairseq-hydra-train imports the package only once training starts, after hydra composed the
    config (and would have changed directory): the shipped configs keep it where it runs
    (hydra.job.chdir: false), so their relative user_dir still names the repository's package."""
    hydra_dir = setup["root"] / "hydra_run_fairseq"
    save = setup["root"] / "fairseq_hydra.ckpt"
    command = ["fairseq-hydra-train", "--config-dir", "configs", "--config-name", "relation_pretrain_cpu",
               f"task.data={setup['data']}", f"model.roberta_path={setup['base']}", f"checkpoint.save_dir={save}",
               "optimization.max_update=2", "optimization.max_epoch=0", "dataset.disable_validation=true", f"hydra.run.dir={hydra_dir}"]
    code, log, record, _ = launch(setup, "fairseq_hydra", 1, None, program=command, cwd=REPO)
    assert code == 0, log[-4000:]
    assert updates(record, 0) == [1, 2] and load(save / "checkpoint_last.pt")["optimizer_history"][-1]["num_updates"] == 2
    assert (hydra_dir / "hydra_train.log").is_file()


# ------------------------------------------------------------------------------------------------
# in-process


def test_adapter_file_writes_are_atomic_and_the_hub_refuses_tmp_files(tiny_base, tmp_path, monkeypatch):
    from kadapter_fairseq import KAdapterHub
    from kadapter_fairseq import checkpoint_utils as ku
    from kadapter_fairseq.errors import CheckpointError

    hub = KAdapterHub.from_pretrained(tiny_base, adapters={"fac": None}, arch="roberta_kadapter_tiny")
    path = tmp_path / "fac.pt"
    hub.save_adapters(str(path))
    before = path.read_bytes()

    def dies_halfway(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # stands for the process dying mid-write

    monkeypatch.setattr(ku.torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        hub.save_adapters(str(path))
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["fac.pt"]
    assert list(KAdapterHub.from_pretrained(tiny_base, adapters={"fac": str(path)}, arch="roberta_kadapter_tiny").model.adapters) == ["fac"]

    tmp = tmp_path / "fac.pt.4242.tmp"  # what a SIGKILL during the write leaves behind
    shutil.copy(path, tmp)
    with pytest.raises(CheckpointError, match=r"fac\.pt\.4242\.tmp is a temporary file .* load .*/fac\.pt instead"):
        KAdapterHub.from_pretrained(tiny_base, adapters={"fac": str(tmp)}, arch="roberta_kadapter_tiny")


def test_fairseq_checkpoint_copies_are_atomic(tmp_path, monkeypatch):
    import fairseq.checkpoint_utils as fcu

    import kadapter_fairseq.atomic as atomic

    src, dst = tmp_path / "checkpoint_2_6.pt", tmp_path / "checkpoint_last.pt"
    src.write_bytes(b"new" * 1000)
    dst.write_bytes(b"old")
    assert fcu.PathManager.atomic_local_copies

    def dies(fin, fout, *args):
        fout.write(b"ne")
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.shutil, "copyfileobj", dies)
    with pytest.raises(KeyboardInterrupt):
        fcu.PathManager.copy(str(src), str(dst), overwrite=True)
    monkeypatch.undo()
    assert dst.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == [src.name, dst.name]  # never half-copied
    assert fcu.PathManager.copy(str(src), str(dst), overwrite=True) and dst.read_bytes() == src.read_bytes()


def dt_config(**values):
    from fairseq.dataclass.configs import DistributedTrainingConfig
    from omegaconf import OmegaConf

    cfg = OmegaConf.structured(DistributedTrainingConfig(**values))
    OmegaConf.set_struct(cfg, False)
    return cfg


def test_cpu_launch_configuration():
    from kadapter_fairseq.distributed import infer_cpu_init_method
    from kadapter_fairseq.errors import ConfigError

    # one machine: spawn world_size processes meeting on localhost
    dt = dt_config(distributed_world_size=3)
    assert infer_cpu_init_method(dt, environ={}) == 3
    assert dt.distributed_init_method.startswith("tcp://localhost:") and dt.distributed_num_procs == 3
    dt = dt_config(distributed_world_size=1)
    assert infer_cpu_init_method(dt, environ={}) == 0 and dt.distributed_init_method is None
    # an explicit init method: this node spawns nprocs_per_node processes, else the whole world
    assert infer_cpu_init_method(dt_config(distributed_world_size=4, distributed_init_method="tcp://h:1"), environ={}) == 4
    assert infer_cpu_init_method(dt_config(distributed_world_size=4, distributed_init_method="tcp://h:1", nprocs_per_node=2),
                                 environ={}) == 2

    # torchrun: the launcher's world size even when distributed_world_size is left at 1
    torchrun = {"MASTER_ADDR": "n0", "MASTER_PORT": "29500", "WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}
    dt = dt_config(distributed_world_size=1)
    assert infer_cpu_init_method(dt, environ=torchrun) == 0
    assert (dt.distributed_init_method, dt.distributed_world_size, dt.distributed_rank, dt.device_id, dt.distributed_no_spawn) == (
        "env://", 4, 3, 1, True)
    with pytest.raises(ConfigError, match="WORLD_SIZE=4"):
        infer_cpu_init_method(dt_config(distributed_world_size=2), environ=torchrun)

    # SLURM, one task per process, through distributed_port as in fairseq
    slurm = {"SLURM_NTASKS": "4", "SLURM_PROCID": "2", "SLURM_LOCALID": "0", "MASTER_ADDR": "node7"}
    dt = dt_config(distributed_port=12345)
    assert infer_cpu_init_method(dt, environ=slurm) == 0
    assert (dt.distributed_init_method, dt.distributed_world_size, dt.distributed_rank, dt.distributed_no_spawn) == (
        "tcp://node7:12345", 4, 2, True)


def test_runtime_checks_on_cpu():
    from omegaconf import OmegaConf

    from kadapter_fairseq.errors import ConfigError
    from kadapter_fairseq.runtime_checks import check_fairseq_train_argv, check_runtime, warn_if_oversubscribed

    def cfg(ws, **common):
        c = {"fp16": False, "memory_efficient_fp16": False, "amp": False, "bf16": False}
        c.update(common)
        return OmegaConf.create({"common": c, "distributed_training": {"distributed_world_size": ws}})

    check_runtime(cfg(4), cuda_available=False)  # several CPU processes now work
    check_fairseq_train_argv(["data", "--cpu", "--distributed-world-size", "4"], cuda_available=False)
    with pytest.raises(ConfigError, match="bf16"):
        check_runtime(cfg(2, fp16=True), cuda_available=False)
    with pytest.raises(ConfigError, match="silently run in fp32"):
        check_fairseq_train_argv(["--amp", "--distributed-world-size", "2"], cuda_available=False)
    assert "3 training processes on 2 CPU cores" in warn_if_oversubscribed(3, environ={}, cores=2)
    assert warn_if_oversubscribed(2, environ={}, cores=2) is None
    assert "4 training processes" in warn_if_oversubscribed(1, environ={"LOCAL_WORLD_SIZE": "4"}, cores=2)


def _collectives_worker(rank, port, out_dir):
    import torch.distributed as dist

    from kadapter_fairseq import distributed

    dist.init_process_group("gloo", init_method=f"tcp://localhost:{port}", world_size=2, rank=rank)
    gathered = distributed.all_gather_list({"rank": rank, "t": torch.tensor([rank + 0.5])})
    # what rank 0 broadcasts on resume: a loaded checkpoint, its config turned back into OmegaConf
    from fairseq.distributed import utils as fairseq_distributed
    from omegaconf import OmegaConf

    sent = {"cfg": OmegaConf.create({"common": {"seed": 3, "user_dir": "u"}, "optimization": {"lr": [0.5]}}),
            "model": {"w": torch.arange(3.0)}} if rank == 0 else None
    got = fairseq_distributed.broadcast_object(sent, src_rank=0, group=fairseq_distributed.get_global_group())
    broadcast = (OmegaConf.is_config(got["cfg"]), got["cfg"].common.seed, list(got["cfg"].optimization.lr), got["model"]["w"].tolist())
    target = os.path.join(out_dir, "shared.txt")

    def build():
        with open(target, "w") as f:
            f.write(f"built by {dist.get_rank()}")
        return "built"

    with distributed.master_first():
        if not os.path.exists(target):  # rank 1 finds rank 0's file and does not write
            build()
        seen = open(target).read()
    result = distributed.run_on_master(lambda: "ran")
    with open(os.path.join(out_dir, f"rank{rank}"), "w") as f:
        f.write(repr(([g["rank"] for g in gathered], [float(g["t"]) for g in gathered], seen, result, broadcast)))
    dist.destroy_process_group()


def test_rank_zero_helpers_all_gather_list_and_checkpoint_broadcast_over_gloo(tmp_path):
    import torch.multiprocessing as mp

    mp.start_processes(_collectives_worker, args=(free_port(), str(tmp_path)), nprocs=2, start_method="fork", join=True)
    r0, r1 = ((tmp_path / f"rank{r}").read_text() for r in (0, 1))
    broadcast = (True, 3, [0.5], [0.0, 1.0, 2.0])
    assert r0 == repr(([0, 1], [0.5, 1.5], "built by 0", "ran", broadcast))
    assert r1 == repr(([0, 1], [0.5, 1.5], "built by 0", None, broadcast))
