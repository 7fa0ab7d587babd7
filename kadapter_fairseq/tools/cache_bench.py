"""What the base-feature cache costs and saves, measured through fairseq's own training loop.

    python -m kadapter_fairseq.tools.cache_bench [--layers 6 --dim 256 ...] [--json FILE]

Trains the same knowledge adapter (dependency-head prediction on random tokens, a
random base of the given shape) for a few epochs without the cache and with it,
and times each epoch from the task's ``begin_epoch`` calls, in wall seconds and
in CPU seconds of the training process (which a shared machine distorts least).
Reports:

- ``fill_vs_uncached``: the first (filling) epoch over an uncached epoch, and
  ``fill_vs_uncached_first`` over an uncached first epoch (both pay the same
  warm-up); the cache's goal is at most 1.10;
- ``cached_speedup``: an uncached epoch over a cached one (after the first).

Each configuration runs in its own subprocess, alternately, ``--repeats`` times,
and medians are reported: this machine is shared and noisy. A benchmark, not a test.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def make_data(out, base_dir, sentences, tokens, seed, fixed_length=False):
    """A dependency-head data directory of random token sequences (lengths tokens/2..tokens, or
    exactly ``tokens`` with ``fixed_length``, <s> and </s> included)."""
    import numpy as np
    import torch
    from fairseq.data import indexed_dataset

    from ..data.dictionary import load_roberta_dictionary

    dictionary = load_roberta_dictionary(os.path.join(base_dir, "dict.txt"), "benchmark base")
    os.makedirs(os.path.join(out, "input0"), exist_ok=True)
    with open(os.path.join(base_dir, "dict.txt"), encoding="utf-8") as f, open(
        os.path.join(out, "input0", "dict.txt"), "w", encoding="utf-8"
    ) as g:
        g.write(f.read())
    rng = np.random.RandomState(seed)
    for split, n in (("train", sentences), ("valid", max(sentences // 8, 1))):
        prefix = os.path.join(out, "input0", split)
        builder = indexed_dataset.make_builder(prefix + ".bin", impl="mmap", vocab_size=len(dictionary))
        heads = []
        for _ in range(n):
            # pieces + </s>; <s> is prepended at load time
            length = tokens - 1 if fixed_length else int(rng.randint(tokens // 2, tokens - 1))
            ids = rng.randint(dictionary.nspecial, len(dictionary) - 1, size=length - 1).tolist() + [dictionary.eos()]
            builder.add_item(torch.IntTensor(ids))
            row = ["-100"] * (length + 1)
            row[1:-1] = [str(int(rng.randint(0, length))) for _ in range(length - 1)]
            heads.append(" ".join(row))
        builder.finalize(prefix + ".idx")
        with open(os.path.join(out, f"{split}.heads"), "w", encoding="utf-8") as f:
            f.write("\n".join(heads) + "\n")


def run_training(data, base, args, cache):
    """One training run in this process; returns each epoch's (wall seconds, CPU seconds of this process)."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq_cli.train import main as train_main

    from ..tasks.base import KAdapterTask

    marks = []
    begin = KAdapterTask.begin_epoch

    def timed_begin(self, epoch, model):
        marks.append((time.perf_counter(), time.process_time()))
        return begin(self, epoch, model)

    argv = [
        data, "--task", "dependency_head_prediction", "--criterion", "dependency_head_prediction",
        "--arch", "roberta_kadapter_tiny", "--roberta-path", base, "--adapter-names", "lin",
        "--adapter-plug-layers", ",".join(str(p) for p in args.plug_layers),
        "--adapter-down-dim", str(args.dim), "--adapter-ffn-dim", str(args.dim * 2), "--adapter-heads", str(args.heads),
        "--adapter-layers", "2", "--max-len", str(args.tokens + 2), "--optimizer", "adam", "--lr", "1e-4",
        "--batch-size", str(args.batch), "--required-batch-size-multiple", "1", "--max-epoch", str(args.epochs),
        "--no-save", "--disable-validation", "--num-workers", "0", "--log-format", "none", "--seed", "1", "--cpu",
    ]
    if cache:
        argv += ["--feature-cache", cache, "--feature-cache-dtype", args.dtype]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    KAdapterTask.begin_epoch = timed_begin
    try:
        train_main(cfg)
    finally:
        KAdapterTask.begin_epoch = begin
    marks.append((time.perf_counter(), time.process_time()))
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(marks, marks[1:])]


def child(argv):
    """``--child DATA BASE CACHE|- ARGS_JSON``: one run, epoch seconds printed as JSON."""
    data, base, cache, raw = argv
    args = argparse.Namespace(**json.loads(raw))
    import logging

    logging.disable(logging.WARNING)
    import kadapter_fairseq  # noqa: F401

    print("EPOCHS " + json.dumps(run_training(data, base, args, None if cache == "-" else cache)), flush=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m kadapter_fairseq.tools.cache_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ffn", type=int, default=1024)
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    args.plug_layers = sorted({0, args.layers // 2, args.layers - 1})

    work = tempfile.mkdtemp(prefix="cache_bench.")
    try:
        return _measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _measure(args, work):
    from .tiny_base import make_tiny_base

    base = make_tiny_base(os.path.join(work, "base"), layers=args.layers, dim=args.dim, heads=args.heads, ffn=args.ffn,
                          max_positions=args.tokens + 8, seed=0)
    data = os.path.join(work, "data")
    make_data(data, base, args.sentences, args.tokens, seed=0)
    spec = json.dumps({k: v for k, v in vars(args).items() if k != "json"})
    runs = {"uncached": [], "cached": []}
    for r in range(args.repeats):
        for name in ("uncached", "cached"):
            cache = os.path.join(work, f"cache{r}") if name == "cached" else "-"
            proc = subprocess.run([sys.executable, "-m", "kadapter_fairseq.tools.cache_bench", "--child", data, base, cache, spec],
                                  capture_output=True, text=True)
            line = [x for x in proc.stdout.splitlines() if x.startswith("EPOCHS ")]
            if proc.returncode != 0 or not line:
                sys.exit(f"cache_bench: the {name} run failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
            runs[name].append(json.loads(line[0][len("EPOCHS "):]))
    result = {
        "shape": {k: getattr(args, k) for k in ("layers", "dim", "heads", "ffn", "sentences", "tokens", "batch", "dtype")},
        "runs": runs,
    }
    print(f"base {args.layers} layers, H={args.dim}; {args.sentences} sentences of ≤{args.tokens} tokens, batch {args.batch}, "
          f"cache {args.dtype}; medians of {args.repeats} runs per configuration")
    # CPU seconds of the training process are what a shared machine distorts least; wall seconds include the disk
    for k, clock in enumerate(("wall", "cpu")):
        uncached = statistics.median(e[k] for run in runs["uncached"] for e in run)
        first = statistics.median(run[0][k] for run in runs["uncached"])  # first epochs carry warm-up costs
        fill = statistics.median(run[0][k] for run in runs["cached"])
        cached = statistics.median(e[k] for run in runs["cached"] for e in run[1:])
        result[clock] = {
            "epoch_s": {"uncached": uncached, "uncached_first": first, "filling": fill, "cached": cached},
            "ratios": {"fill_vs_uncached": fill / uncached, "fill_vs_uncached_first": fill / first,
                       "cached_speedup": uncached / cached},
        }
        print(f"  {clock:4s}: uncached epoch {uncached:6.2f} s (first {first:6.2f} s) | filling epoch {fill:6.2f} s: "
              f"fill_vs_uncached = {fill / uncached:.3f}, vs the uncached first epoch {fill / first:.3f} (goal ≤ 1.10) | "
              f"cached epoch {cached:6.2f} s: cached_speedup = {uncached / cached:.2f}×")
    if args.json:
        from ..atomic import write_json

        write_json(args.json, result, indent=1)
    return result


if __name__ == "__main__":
    main()
