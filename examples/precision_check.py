#!/usr/bin/env python
"""Does the demo say the same thing in bf16 as in fp32? The check that decides the demo's precision.

    python examples/precision_check.py --work-dir precision_check

Builds (or reuses) the demo's base once, in fp32, then runs the demo experiment
(``examples/experiments/demo.yaml``) twice on it, ``precision=fp32`` and ``precision=bf16``, and
compares them against margins fixed before any run (docs/benchmarks.md, "Precision equivalence"):

- every variant's mean score within ``MEAN_MARGIN`` (0.02 F1) of its fp32 mean;
- the fac adapter's final training loss (the mean over the last epoch, as fairseq's trainer kept it
  in ``checkpoint_last.pt``) within ``LOSS_MARGIN`` (2%) of fp32's.

Both hold: bf16 may be the demo's default on CPUs with bf16 matrix units (``precision: auto``).
Either fails: the demo stays in fp32, and the figures are reported as they are. The wall time of
each experiment (the same base, two runs at a time) is printed beside them.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo  # noqa: E402  (the demo's own text collection, base build and sizes)

MEAN_MARGIN = 0.02  # absolute F1, per variant mean
LOSS_MARGIN = 0.02  # relative, the fac adapter's final training loss
DTYPES = ("fp32", "bf16")


def final_train_loss(checkpoint: str) -> float:
    """The training loss fairseq's trainer last reported (its ``train`` meters, kept in the checkpoint)."""
    import torch

    import kadapter_fairseq  # noqa: F401  (allow-lists what fairseq checkpoints hold)

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    for _, name, _, meter in state["extra_state"]["metrics"]["train"]:
        if name == "loss":
            return float(meter["sum"]) / float(meter["count"])
    raise KeyError(f"{checkpoint}: no train loss meter")


def run(dtype: str, work: str, base_dir: str, size: demo.Size, extra) -> dict:
    from kadapter_fairseq.experiment.cli import main as experiment_main
    from kadapter_fairseq.experiment.layout import Layout

    out = os.path.join(work, dtype)
    args = ["run", demo.EXPERIMENT, "--out", out, f"base.roberta_path={base_dir}", f"precision={dtype}",
            "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] + list(size.overrides) + list(extra)
    print("$ kadapter-experiment " + " ".join(demo.quote(a) for a in args[1:]), flush=True)
    started = time.time()
    if experiment_main(args):
        sys.exit(f"precision_check: the {dtype} experiment failed")
    seconds = time.time() - started
    with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
        results = json.load(f)
    means = {r["variant"]: r["mean"] for r in results["rows"]}
    loss = final_train_loss(Layout(out).knowledge_checkpoint("fac", which="last"))
    return {"out": out, "seconds": seconds, "means": means, "fac_final_train_loss": loss,
            "statements": results.get("statements", []), "provenance": results.get("provenance")}


def compare(fp32: dict, bf16: dict) -> dict:
    variants = [{"variant": v, "fp32": m, "bf16": bf16["means"].get(v),
                 "diff": None if bf16["means"].get(v) is None else bf16["means"][v] - m} for v, m in fp32["means"].items()]
    for row in variants:
        row["within"] = row["diff"] is not None and abs(row["diff"]) <= MEAN_MARGIN
    rel = (bf16["fac_final_train_loss"] - fp32["fac_final_train_loss"]) / fp32["fac_final_train_loss"]
    loss = {"fp32": fp32["fac_final_train_loss"], "bf16": bf16["fac_final_train_loss"], "relative_diff": rel,
            "within": abs(rel) <= LOSS_MARGIN}
    return {"variants": variants, "fac_loss": loss, "holds": all(r["within"] for r in variants) and loss["within"],
            "margins": {"mean_f1": MEAN_MARGIN, "fac_loss_relative": LOSS_MARGIN},
            "seconds": {"fp32": fp32["seconds"], "bf16": bf16["seconds"]}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", default="precision_check")
    p.add_argument("--size", choices=sorted(demo.SIZES), default="demo")
    p.add_argument("overrides", nargs="*", help="more kadapter-experiment overrides, for both runs")
    args = p.parse_args(argv)
    from kadapter_fairseq.precision import cpu_has_fast_bf16

    if not cpu_has_fast_bf16():
        print("note: this CPU has no bf16 matrix units (amx_bf16 / avx512_bf16): bf16 is emulated here, and slower")
    work = os.path.abspath(args.work_dir)
    size = demo.SIZES[args.size]
    text = os.path.join(work, "text", "base_text.txt")
    demo.collect_text(text)
    base_dir = os.path.join(work, "base")
    demo.build_base(text, base_dir, size)  # fp32, reused when already built
    runs = {dtype: run(dtype, work, base_dir, size, args.overrides) for dtype in DTYPES}
    result = compare(runs["fp32"], runs["bf16"])
    result["runs"] = runs

    print(f"\nprecision check (margins fixed in advance: |mean difference| <= {MEAN_MARGIN} F1 per variant, "
          f"fac final training loss within {LOSS_MARGIN:.0%})\n")
    print("| variant | fp32 | bf16 | bf16 - fp32 | within |\n|---|---|---|---|---|")
    for r in result["variants"]:
        diff = "–" if r["diff"] is None else f"{r['diff']:+.4f}"
        bf = "–" if r["bf16"] is None else f"{r['bf16']:.4f}"
        print(f"| {r['variant']} | {r['fp32']:.4f} | {bf} | {diff} | {'yes' if r['within'] else 'NO'} |")
    loss = result["fac_loss"]
    print(f"\nfac adapter final training loss: fp32 {loss['fp32']:.4f}, bf16 {loss['bf16']:.4f} "
          f"({loss['relative_diff']:+.2%}): {'within' if loss['within'] else 'OUTSIDE'} the margin")
    print(f"experiment wall time on the same base: fp32 {runs['fp32']['seconds']:.0f} s, bf16 {runs['bf16']['seconds']:.0f} s")
    verdict = "holds: bf16 may be the demo's default where the CPU has bf16 matrix units" if result["holds"] else \
        "does NOT hold: the demo stays in fp32"
    print(f"equivalence {verdict}")
    from kadapter_fairseq import atomic

    atomic.write_json(os.path.join(work, "precision_check.json"), result)
    print(f"wrote {os.path.join(work, 'precision_check.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
