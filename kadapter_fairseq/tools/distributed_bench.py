"""Updates per second of data-parallel CPU training, N=1 against N=2 processes.

``measure()`` trains the factual adapter (``relation_pretrain``) on synthetic
data with ``fairseq-train --cpu --distributed-world-size N`` for each N, the
global batch held fixed (each of the N processes takes ``global_batch / N``
examples), so every row does the same work per update and, as
``tests/test_distributed.py`` checks, ends with the same adapter. The rate is
fairseq's own ``ups`` meter (start-up and data loading excluded); every process
gets its share of the cores, as in training (``distributed.set_cpu_threads``).
``kadapter-bench --distributed`` prints the rows.

The synthetic data and the deterministic command line are shared with the tests:
``make_relation_data`` and ``train_command``.
"""
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the --user-dir: kadapter_fairseq/


def make_relation_data(base_dir, out_dir, n_train=24, n_valid=8, length=12, relations=3, seed=0):
    """A ``relation_pretrain`` data directory (the layout ``data_prep.trex`` writes) of random
    pieces from the base's dictionary; the relation is given away by the piece after the
    subject marker, so a few updates already lower the loss."""
    from ..data.binarize import binarize_lines
    from ..data.dictionary import load_roberta_dictionary
    from ..data.labels import LabelVocabulary

    if length < 6:
        raise ValueError("length must leave room for both markers: at least 6 pieces")
    dictionary = load_roberta_dictionary(os.path.join(base_dir, "dict.txt"))
    words = [s for s in dictionary.symbols[dictionary.nspecial:] if s not in ("<mask>", "@", "#") and not s.startswith("<")]
    rng = np.random.RandomState(seed)
    names = [f"P{100 + r}" for r in range(relations)]
    cue = words[:relations]
    os.makedirs(out_dir, exist_ok=True)
    LabelVocabulary(names).save(os.path.join(out_dir, "labels.txt"))
    lines = {}
    for split, n in (("train", n_train), ("valid", n_valid)):
        pieces, labels, positions = [], [], []
        for _ in range(n):
            r = int(rng.randint(relations))
            row = [words[i] for i in rng.randint(relations, len(words), size=length)]
            row[1] = cue[r]
            # <s> is position 0, so piece k sits at position k + 1
            positions.append("1 4")
            pieces.append(" ".join(row))
            labels.append(names[r])
        lines[split] = pieces
        with open(os.path.join(out_dir, f"{split}.label"), "w", encoding="utf-8") as f:
            f.write("\n".join(labels) + "\n")
        with open(os.path.join(out_dir, f"{split}.positions"), "w", encoding="utf-8") as f:
            f.write("\n".join(positions) + "\n")
    binarize_lines(lines, os.path.join(out_dir, "input0"), os.path.join(base_dir, "dict.txt"))
    return out_dir


def train_command(data_dir, base_dir, save_dir, batch_size, world_size=1, max_update=8, save_interval_updates=0,
                  seed=1, lr=1e-3, optimizer="adam", plug_layers="0,1,2", extra: Sequence[str] = ()) -> List[str]:
    """``fairseq-train`` arguments (without the program) for a deterministic factual-adapter run:
    dropout off, batches of exactly ``batch_size`` examples in a fixed order (the task's seeded
    shuffle, no per-epoch batch shuffling: ``--curriculum``), so N processes with batch B see,
    update for update, the same examples as one process with batch N*B."""
    cmd = [
        str(data_dir), "--user-dir", PACKAGE_DIR,
        "--task", "relation_pretrain", "--criterion", "relation_pretrain", "--arch", "roberta_kadapter_tiny",
        "--roberta-path", str(base_dir), "--adapter-names", "fac", "--train-phase", "knowledge",
        "--adapter-plug-layers", plug_layers,
        "--adapter-dropout", "0", "--adapter-attention-dropout", "0", "--head-dropout", "0",
        "--optimizer", optimizer, "--lr", str(lr), "--lr-scheduler", "polynomial_decay",
        "--warmup-updates", "2", "--total-num-update", str(max(max_update, 3)), "--clip-norm", "1.0",
        "--batch-size", str(batch_size), "--required-batch-size-multiple", "1", "--curriculum", "1000",
        "--max-update", str(max_update), "--save-dir", str(save_dir), "--no-epoch-checkpoints",
        "--disable-validation", "--num-workers", "0", "--log-format", "simple", "--log-interval", "1",
        "--seed", str(seed), "--cpu", "--distributed-world-size", str(world_size),
    ]
    if optimizer == "adam":
        cmd += ["--adam-betas", "(0.9,0.999)"]
    if save_interval_updates:
        cmd += ["--save-interval-updates", str(save_interval_updates)]
    return cmd + list(extra)


_UPS = re.compile(r"\| ups ([0-9.]+)")
_UPDATES = re.compile(r"\| num_updates ([0-9]+)")
_TRAIN_WALL = re.compile(r"\| train_wall ([0-9.]+)")


def _final_train_stats(log: str) -> Dict[str, float]:
    """fairseq's end-of-epoch ``train`` line (the last line carrying ``ups``)."""
    lines = [line for line in log.splitlines() if _UPS.search(line) and _UPDATES.search(line)]
    if not lines:
        raise RuntimeError("fairseq-train printed no training statistics:\n" + log[-3000:])
    line = lines[-1]
    out = {"ups": float(_UPS.search(line).group(1)), "num_updates": int(_UPDATES.search(line).group(1))}
    wall = _TRAIN_WALL.search(line)
    if wall:
        out["train_wall"] = float(wall.group(1))
    return out


def measure(world_sizes: Sequence[int] = (1, 2), global_batch: int = 16, updates: int = 40, layers: int = 4,
            dim: int = 128, length: int = 48, work_dir: Optional[str] = None, timeout: int = 900,
            single_thread_row: bool = True) -> List[dict]:
    """Train ``updates`` updates with each world size and return one row per run:
    ``processes``, ``batch_per_process``, ``threads_per_process`` (``OMP_NUM_THREADS``:
    the cores shared out, as training does by default), ``updates_per_s`` (fairseq's
    ``ups``), ``examples_per_s``, ``speedup`` (against the first row), ``wall_s`` (the
    whole command, start-up included) and ``load_avg`` (the machine's 1-minute load when
    the run ended: other work on the machine skews every figure). With
    ``single_thread_row`` one more row runs 1 process on 1 thread, which separates what
    the second process brings from what the second thread brings."""
    from ..runtime_checks import available_cores
    from .tiny_base import make_tiny_base

    for n in world_sizes:
        if global_batch % n:
            raise ValueError(f"global_batch={global_batch} does not split evenly over {n} processes")
    cores = available_cores()
    runs = [(n, max(1, cores // n)) for n in world_sizes]
    if single_thread_row and cores > 1 and 1 in world_sizes:
        runs.insert(1, (1, 1))
    owned = work_dir is None
    work = tempfile.mkdtemp(prefix="kadapter-dist-bench.") if owned else work_dir
    base = make_tiny_base(os.path.join(work, "base"), layers=layers, dim=dim, heads=max(1, dim // 32), ffn=4 * dim,
                          max_positions=max(128, length + 8))
    data = make_relation_data(base, os.path.join(work, "data"), n_train=global_batch * (updates + 2), n_valid=8, length=length)
    plug = ",".join(str(i) for i in sorted({0, layers // 2, layers - 1}))
    train = os.path.join(os.path.dirname(sys.executable), "fairseq-train")
    rows = []
    for n, threads in runs:
        cmd = [train] + train_command(data, base, os.path.join(work, f"ckpt{n}"), global_batch // n, world_size=n,
                                      max_update=updates, plug_layers=plug, extra=["--no-save"])
        # passive OpenMP waits: busy-waiting threads would steal the other process's core
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE")
        start = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        wall = time.time() - start
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise RuntimeError(f"fairseq-train with {n} process(es) failed:\n{log[-3000:]}")
        stats = _final_train_stats(log)
        rows.append({
            "processes": n,
            "batch_per_process": global_batch // n,
            "threads_per_process": threads,
            "updates": stats["num_updates"],
            "updates_per_s": stats["ups"],
            "examples_per_s": round(stats["ups"] * global_batch, 2),
            "wall_s": round(wall, 1),
            "load_avg": round(os.getloadavg()[0], 2),
        })
    for row in rows:
        row["speedup"] = round(row["updates_per_s"] / rows[0]["updates_per_s"], 3) if rows[0]["updates_per_s"] else None
    if owned:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return rows


def format_rows(rows: List[dict]) -> str:
    keys = ["processes", "batch_per_process", "threads_per_process", "updates", "updates_per_s", "examples_per_s", "speedup",
            "wall_s", "load_avg"]
    lines = [" | ".join(keys)]
    lines += [" | ".join(str(r.get(k)) for k in keys) for r in rows]
    return "\n".join(lines)


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(prog="python -m kadapter_fairseq.tools.distributed_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world-sizes", default="1,2")
    p.add_argument("--global-batch", type=int, default=16)
    p.add_argument("--updates", type=int, default=40)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--length", type=int, default=48)
    a = p.parse_args(argv)
    rows = measure([int(x) for x in a.world_sizes.split(",")], a.global_batch, a.updates, a.layers, a.dim, a.length)
    print(format_rows(rows))


if __name__ == "__main__":
    main()
