"""The real training path's throughput: `kadapter-train` itself, knowledge phase, at a RoBERTa shape.

    python -m kadapter_fairseq.tools.train_bench --size large --batch 4 --tokens 128 --precision fp32,bf16
    kadapter-bench --size large --batch 4 --tokens 128 --precision fp32,bf16 --train-path   # beside the bench's rows

A random base of the shape (``tools/tiny_base.make_tiny_base`` with the shape's layers, H, heads and
FFN; a small sentencepiece vocabulary, since embedding lookups are no part of the cost measured
here) and random dependency-head data of exactly ``--tokens`` tokens per sentence
(``tools/cache_bench.make_data``) are written to a work directory. Then, per precision, one
`kadapter-train` run (``configs/dependency_head_prediction.yaml``: the linguistic adapter's
knowledge phase, base frozen, the adapter sized by ``roberta_kadapter_<size>``, fairseq's Adam)
trains ``--updates`` updates of ``--batch`` sentences with ``common.log_format=json
common.log_interval=1``, no validation and no checkpoint. fairseq's own words/s (``wps``: the
tokens of an update over the wall time since the previous one, data loading and logging included)
is read from each update's log record; the figure reported is the median over the updates after
the first ``--warmup-updates`` (start-up, first-call kernel selection). The precisions map to
fairseq's switches: ``bf16`` -> ``common.bf16=true``, ``fp16`` -> ``common.fp16=true``, ``amp`` ->
``common.amp=true`` (the last two on a GPU only).

Beside each precision's figure stands the ``kadapter_knowledge`` row of ``kadapter-bench`` at the
same shape and precision (a sentence head and the fac adapter instead of the dependency head and
lin: the same adapter architecture over the same base). A benchmark, not a test: on a shared
machine compare the figures of one run, and take timings that matter on quiet cores.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from ..errors import KAdapterError

PROG = "python -m kadapter_fairseq.tools.train_bench"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "dependency_head_prediction"
FLAGS = {"fp32": [], "bf16": ["common.bf16=true"], "fp16": ["common.fp16=true"], "amp": ["common.amp=true"]}


class TrainBenchError(KAdapterError):
    pass


def prepare(work, size, batch, tokens, updates, seed=0):
    """The random base and data of this shape in ``work`` (reused when a previous run left them)."""
    from .bench import SIZES
    from .cache_bench import make_data
    from .tiny_base import make_tiny_base

    s = SIZES[size]
    base = os.path.join(work, f"base-{size}")
    if not os.path.isfile(os.path.join(base, "model.pt")):
        make_tiny_base(base, layers=s["layers"], dim=s["dim"], heads=s["heads"], ffn=s["ffn"],
                       max_positions=max(tokens + 8, 64), seed=seed)
    data = os.path.join(work, f"data-{size}-{batch}x{tokens}-{updates}")
    if not os.path.isfile(os.path.join(data, "train.heads")):
        make_data(data, base, batch * (updates + 1), tokens, seed, fixed_length=True)
    return base, data


def model_overrides(size):
    """The adapter of ``roberta_kadapter_<size>``, spelled out: the config names the large one."""
    from dataclasses import fields

    from ..models.roberta_kadapter import ARCH_DEFAULTS, RobertaKAdapterConfig

    keys = ("adapter_plug_layers", "adapter_down_dim", "adapter_layers", "adapter_heads", "adapter_ffn_dim")
    defaults = {f.name: f.default for f in fields(RobertaKAdapterConfig)}
    arch = dict(defaults, **ARCH_DEFAULTS[f"roberta_kadapter_{size}"])
    return [f"model._name=roberta_kadapter_{size}"] + [f"++model.{k}={_hydra_value(arch[k])}" for k in keys]


def _hydra_value(v):
    return f"'{v}'" if isinstance(v, str) else str(v)


def train_command(base, data, work, size, batch, tokens, updates, precision, device):
    return [
        sys.executable, "-m", "kadapter_fairseq.tools.train", "--config-dir", os.path.join(REPO, "configs"),
        "--config-name", CONFIG,
        f"task.data={data}", f"model.roberta_path={base}", f"task.max_len={tokens}", *model_overrides(size),
        f"dataset.batch_size={batch}", "dataset.required_batch_size_multiple=1", "dataset.num_workers=0",
        "dataset.disable_validation=true", f"optimization.max_update={updates}", "optimization.max_epoch=0",
        "checkpoint.no_save=true", "common.log_format=json", "common.log_interval=1", "common.seed=1",
        "distributed_training.distributed_world_size=1", f"hydra.run.dir={work}/hydra",
        *(["common.cpu=true"] if device == "cpu" else []), *FLAGS[precision],
    ]


def parse_updates(log: str):
    """fairseq's per-update JSON records (``{"epoch", "update", "wps", ...}``) from a log."""
    records = []
    for line in log.splitlines():
        start = line.find('{"epoch"')
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except json.JSONDecodeError:
            continue
        if "wps" in record:  # per-update records; the epoch summary's keys are prefixed (train_wps)
            records.append(record)
    return records


def run_one(base, data, work, size, batch, tokens, updates, warmup, precision, device, threads=None):
    cmd = train_command(base, data, work, size, batch, tokens, updates, precision, device)
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = [l for l in log.splitlines() if l.strip()][-5:]
        raise TrainBenchError(f"kadapter-train ({precision}) failed: " + " | ".join(tail))
    records = parse_updates(log)
    if len(records) < updates:
        raise TrainBenchError(f"kadapter-train ({precision}): {len(records)} update records in its log, expected {updates}")
    wps = [float(r["wps"]) for r in records]
    timed = wps[warmup:] or wps[-1:]
    return {"precision": precision, "words_per_s": statistics.median(timed), "wps_per_update": wps,
            "timed_updates": len(timed), "command": "kadapter-train " + " ".join(cmd[4:])}


def measure(size, batch, tokens, precisions, updates=6, device="cpu", threads=None, warmup=2, work=None,
            bench_rows=None, log=print):
    """Words/s of `kadapter-train` per precision, with the bench's kadapter_knowledge row beside each.
    ``bench_rows``: a kadapter-bench result of the same shape whose rows to use (else they are run here)."""
    if updates <= warmup:
        raise TrainBenchError(f"--updates ({updates}) must exceed --warmup-updates ({warmup})")
    own = work is None
    work = work or tempfile.mkdtemp(prefix="kadapter-train-bench.")
    try:
        log(f"{PROG}: preparing a random {size} base and data in {work} ...", file=sys.stderr)
        base, data = prepare(work, size, batch, tokens, updates)
        runs = {}
        for precision in precisions:
            log(f"{PROG}: kadapter-train, {size}, {batch}x{tokens}, {precision}, {updates} updates ...", file=sys.stderr)
            runs[precision] = run_one(base, data, work, size, batch, tokens, updates, warmup, precision, device, threads)
            runs[precision]["bench_tokens_per_s"] = _bench_row(bench_rows, size, batch, tokens, precision, device, threads)
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    result = {"size": size, "batch": batch, "tokens": tokens, "device": device, "updates": updates, "warmup_updates": warmup,
              "config": CONFIG, "runs": runs}
    if len(precisions) > 1:
        first = runs[precisions[0]]["words_per_s"]
        result["speedups"] = {f"{p}_vs_{precisions[0]}": runs[p]["words_per_s"] / first for p in precisions[1:]}
    return result


def _bench_row(bench_rows, size, batch, tokens, precision, device, threads):
    if bench_rows is not None and precision in bench_rows.get("runs", {}):
        rows = {r["name"]: r for r in bench_rows["runs"][precision]["rows"]}
        return rows["kadapter_knowledge"]["tokens_per_s"]
    from .bench import run_row_process

    a = argparse.Namespace(size=size, batch=batch, tokens=tokens, device=device, threads=threads, warmup=1, steps=3)
    return run_row_process("kadapter_knowledge", a, precision)["tokens_per_s"]


def format_train_path(result):
    out = [f"kadapter-train ({result['config']}, knowledge phase), {result['size']}, batch {result['batch']}x{result['tokens']}, "
           f"{result['device']}: median words/s of updates {result['warmup_updates'] + 1}..{result['updates']}", "",
           "| precision | kadapter-train words/s | kadapter-bench kadapter_knowledge tokens/s | train / bench |",
           "|---|---:|---:|---:|"]
    for name, run in result["runs"].items():
        bench = run.get("bench_tokens_per_s")
        out.append(f"| {name} | {run['words_per_s']:.4g} | {bench:.4g} | {run['words_per_s'] / bench:.2f} |" if bench else
                   f"| {name} | {run['words_per_s']:.4g} | - | - |")
    for key, value in result.get("speedups", {}).items():
        out.append(f"\nkadapter-train words/s, {key}: {value:.2f}")
    return "\n".join(out)


def main(argv=None):
    from .bench import SIZES

    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="base")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--precision", default="fp32,bf16", help="comma-separated: fp32, bf16, fp16 (GPU), amp (GPU)")
    p.add_argument("--updates", type=int, default=6, help="updates per run (default 6)")
    p.add_argument("--warmup-updates", type=int, default=2, help="updates left out of the median (default 2)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the training runs (default: inherited)")
    p.add_argument("--work-dir", default=None, help="keep the random base and data here (reused by later runs)")
    p.add_argument("--json", help="also write the figures here")
    a = p.parse_args(argv)
    precisions = [x.strip() for x in a.precision.split(",") if x.strip()]
    bad = [x for x in precisions if x not in FLAGS]
    if bad or not precisions:
        p.error(f"--precision: {', '.join(bad) or 'nothing'} is not one of {', '.join(FLAGS)}")
    if a.device == "cpu" and any(x in ("fp16", "amp") for x in precisions):
        p.error("fp16 and amp need a CUDA GPU (fairseq refuses them on CPU); on CPU use bf16")
    for name in ("batch", "tokens", "updates"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be at least 1")
    try:
        result = measure(a.size, a.batch, a.tokens, precisions, a.updates, a.device, a.threads, a.warmup_updates, a.work_dir)
    except KAdapterError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    import torch

    from ..provenance import collect

    result["provenance"] = collect(dtype=",".join(precisions), threads=a.threads or torch.get_num_threads(), device=a.device)
    print(format_train_path(result))
    if a.json:
        from ..atomic import write_json

        write_json(a.json, result, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
