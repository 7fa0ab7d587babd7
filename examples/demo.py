#!/usr/bin/env python
"""K-Adapter end to end on a CPU, on the sample data shipped in examples/data/ (``make demo``).

The demo is an experiment (``examples/experiments/demo.yaml``, run by ``kadapter-experiment``):
SemEval-2010 Task 8 with the paper's six rows (RoBERTa, RoBERTa + multitask, K-Adapter F+L, F, L,
and the control K-Adapter without knowledge: the same adapters randomly initialised), each over
three seeds. This script only does what the experiment runner does not:

  1. collect the base's pre-training text from the samples (FewRel, SemEval train/dev,
     UD English-EWT, CosmosQA contexts; never the SemEval test sentences)
  2. ``kadapter-build-base``: a sentencepiece vocabulary and a small RoBERTa pre-trained with
     fairseq's masked_lm on that text (reused when the same request was built before)
  3. ``kadapter-experiment run examples/experiments/demo.yaml --out demo_output ...``: data_prep,
     the fac and lin adapters and the multitask base (trained once), the 6 x 3 SemEval runs
     (kadapter-train, kadapter-predict, kadapter-score, each echoed), results.json/.md/.png
  4. check that the base's weights are unchanged after the adapters' knowledge training (bit-identical to
     model.pt in fp32; equal to model.pt cast to bf16 in a bf16 run)

A second run reuses the base and skips every finished run (the runner's own resume logic).
"""
import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(REPO, "examples", "data")
EXPERIMENT = os.path.join(REPO, "examples", "experiments", "demo.yaml")
BIN = os.path.dirname(sys.executable)


def shown(path: str) -> str:
    from kadapter_fairseq.experiment.commands import shown as runner_shown  # (imports fairseq: only when needed)

    return runner_shown(path)


def quote(arg: str) -> str:
    from kadapter_fairseq.experiment.commands import quote as runner_quote

    return runner_quote(arg)


FEWREL = os.path.join(SAMPLES, "fewrel", "fewrel_val_wiki_sample.json")
SEMEVAL = {split: os.path.join(SAMPLES, "semeval2010_task8", name) for split, name in
           [("train", "TRAIN_FILE_sample.TXT"), ("valid", "DEV_FILE_sample.TXT")]}
EWT = os.path.join(SAMPLES, "ud_english_ewt", "en_ewt-ud-dev_sample.conllu")
COSMOSQA = os.path.join(SAMPLES, "cosmosqa", "valid_sample.csv")


@dataclass(frozen=True)
class Size:
    """The base to build and the experiment overrides. ``demo`` fits 15 minutes on 2 cores, ``ci`` a few."""

    base: Dict[str, object]  # kadapter-build-base options
    overrides: List[str] = field(default_factory=list)  # kadapter-experiment overrides (demo.yaml is sized for `demo`)


SIZES = {
    # 4 layers, H=128, 3,000 pieces: pre-trains in about 3 minutes on 2 cores and gets well under a
    # unigram model's loss (it uses context); larger sizes need more text than the samples hold
    "demo": Size(base=dict(layers=4, dim=128, heads=4, ffn=512, max_positions=128, vocab_size=3000,
                           updates=600, batch_size=16, lr=2e-3)),
    "ci": Size(
        base=dict(layers=2, dim=32, heads=2, ffn=64, max_positions=128, vocab_size=1000, updates=6, batch_size=8, lr=1e-3),
        overrides=[
            "arch_overrides=[\"model.adapter_plug_layers='0,1,2'\",\"model.adapter_down_dim=16\",\"model.adapter_layers=1\","
            "\"model.adapter_heads=2\",\"model.adapter_ffn_dim=32\"]",
            "seeds=[1,2]", "knowledge.fac.updates=3", "knowledge.lin.updates=3", "knowledge.multitask.updates=3",
            "tasks.semeval.updates=4", "tasks.semeval.validations=1", "tasks.semeval.batch_size=8",
        ],
    ),
}


# ----------------------------------------------------------------------------------------------
# step 1: the base's pre-training text


def collect_text(out_path: str) -> Dict[str, int]:
    """Sentences of the samples, one a line (SemEval's entity tags removed; its test split left out)."""
    counts = {}
    lines: List[str] = []

    with open(FEWREL, encoding="utf-8") as f:
        fewrel = json.load(f)
    n = 0
    for instances in fewrel.values():
        for inst in instances:
            lines.append(" ".join(t for t in inst["tokens"] if t.strip()))
            n += 1
    counts["fewrel"] = n

    header = re.compile(r'^\d+\t"(.*)"\s*$')
    for split in ("train", "valid"):
        n = 0
        with open(SEMEVAL[split], encoding="utf-8-sig") as f:
            for line in f:
                m = header.match(line.rstrip("\r\n"))
                if m:
                    lines.append(re.sub(r"</?e[12]>", "", m.group(1)))
                    n += 1
        counts[f"semeval_{split}"] = n

    n = 0
    with open(EWT, encoding="utf-8") as f:
        for line in f:
            if line.startswith("# text ="):
                lines.append(line.split("=", 1)[1].strip())
                n += 1
    counts["ud_ewt"] = n

    seen, n = set(), 0
    with open(COSMOSQA, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            context = " ".join(row["context"].split())
            if context and context not in seen:
                seen.add(context)
                lines.append(context)
                n += 1
    counts["cosmosqa_contexts"] = n

    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    return counts


# ----------------------------------------------------------------------------------------------
# step 2: the base (kadapter-build-base keeps its own cache and says when it reuses it)


def build_base(text: str, base_dir: str, size: Size) -> dict:
    script = os.path.join(BIN, "kadapter-build-base")
    argv = [script] if os.path.isfile(script) else [sys.executable, "-m", "kadapter_fairseq.tools.build_base"]
    opts = ["--text", shown(text), "--out", shown(base_dir)]
    for k, v in size.base.items():
        opts += ["--" + k.replace("_", "-"), str(v)]
    print("  $ " + " ".join(quote(a) for a in ["kadapter-build-base"] + opts), flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # busy-waiting OpenMP threads crawl on shared cores
    log = os.path.join(os.path.dirname(base_dir), "build_base.log")
    with open(log, "w", encoding="utf-8") as f:
        proc = subprocess.Popen(argv + opts, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for line in proc.stdout:
            f.write(line)
            if line.startswith(("[build-base]", "kadapter-build-base", "  MLM")):
                print("  " + line.rstrip("\n"), flush=True)
        if proc.wait() != 0:
            sys.exit(f"demo: kadapter-build-base failed; see {shown(log)}")
    with open(os.path.join(base_dir, "build.json"), encoding="utf-8") as f:
        return json.load(f)


# ----------------------------------------------------------------------------------------------
# step 4: the base did not move


def check_base_unchanged(base_model: str, checkpoints: Dict[str, str]) -> Dict[str, dict]:
    """Compare every base tensor (``encoder.*``) of each adapter run's checkpoint with the base cast to
    that run's precision (bit-identical in fp32; ``kadapter_fairseq/tools/base_check.py``)."""
    import logging

    logging.getLogger("fairseq").setLevel(logging.WARNING)
    import kadapter_fairseq  # noqa: F401  (allow-lists what fairseq checkpoints hold)
    from kadapter_fairseq.tools.base_check import base_tensors, check_checkpoint

    base = base_tensors(base_model)
    return {name: {"checkpoint": shown(path), **check_checkpoint(base_model, path, base=base)}
            for name, path in checkpoints.items()}


# ----------------------------------------------------------------------------------------------


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="demo", help="demo: within 15 minutes on 2 cores; ci: tiny")
    p.add_argument("--work-dir", default=os.path.join(REPO, "demo_output"), help="where everything is built and kept")
    p.add_argument("--train-phase", choices=["finetune", "efficient"], default="efficient",
                   help="downstream: efficient = only fusion + head train (default: fits the time budget); "
                   "finetune = the base trains too, adapters frozen (the paper's setting, about 3x slower)")
    p.add_argument("--write-text", metavar="FILE", help="only write the base's pre-training text to FILE and exit")
    p.add_argument("overrides", nargs="*", help="more kadapter-experiment overrides (e.g. seeds=[1,2,3,4,5], "
                   "hydra/launcher=joblib)")
    args = p.parse_args(argv)

    if args.write_text:
        counts = collect_text(args.write_text)
        print(f"wrote {sum(counts.values())} lines to {args.write_text}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return 0

    size = SIZES[args.size]
    work = os.path.abspath(args.work_dir)
    started = time.time()
    print(f"K-Adapter demo (size {args.size}) in {shown(work)}")

    print("\n[base 1/2] the base's pre-training text (sample sentences; SemEval test sentences left out)")
    text = os.path.join(work, "text", "base_text.txt")
    counts = collect_text(text)
    print(f"  {sum(counts.values())} lines -> {shown(text)}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))

    print("\n[base 2/2] a small RoBERTa pre-trained with fairseq's masked_lm (reused when already built)")
    base_dir = os.path.join(work, "base")
    build = build_base(text, base_dir, size)
    base_seconds = time.time() - started

    print("\nthe experiment: SemEval-2010 Task 8, six variants, seeds (examples/experiments/demo.yaml)")
    # two single-threaded runs at a time use 2 cores better than one run with two threads
    launcher = [] if any(o.startswith("hydra/launcher=") for o in args.overrides) else \
        ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    exp_args = ["run", shown(EXPERIMENT), "--out", shown(work), f"base.roberta_path={shown(base_dir)}",
                f"train_phase={args.train_phase}"] + launcher + list(size.overrides) + list(args.overrides)
    print("$ " + " ".join(quote(a) for a in ["kadapter-experiment"] + exp_args), flush=True)
    from kadapter_fairseq.experiment.cli import main as experiment_main

    code = experiment_main(exp_args)
    if code:
        return code

    print("\nbase weights after the adapters' knowledge training")
    from kadapter_fairseq.experiment.layout import Layout

    checkpoints = {n: Layout(work).knowledge_checkpoint(n) for n in ("fac", "lin")}
    unchanged = check_base_unchanged(os.path.join(base_dir, "model.pt"), checkpoints)
    for name, check in unchanged.items():
        same = "bit-identical to model.pt" if check["precision"] == "fp32" else f"equal to model.pt cast to {check['precision']}"
        verdict = same if check["identical"] else \
            f"CHANGED: {len(check['changed'])} tensors differ, {len(check['missing'])} missing"
        print(f"  after {name} adapter training: all {check['tensors']} base tensors {verdict}")
    from kadapter_fairseq import atomic

    atomic.write_json(os.path.join(work, "base_check.json"),
                      {"base": {"dir": shown(base_dir), "valid_loss_before": build["valid_loss_before"],
                                "valid_loss_after": build["valid_loss_after"],
                                "valid_unigram_bits": build.get("valid_unigram_bits"), "request": build["request"]},
                       "base_unchanged": unchanged, "base_unchanged_ok": all(c["identical"] for c in unchanged.values())})
    total = time.time() - started
    print(f"\nbase {base_seconds / 60:.1f} min, total {total / 60:.1f} min; wrote {shown(os.path.join(work, 'base_check.json'))}")
    if not all(c["identical"] for c in unchanged.values()):
        sys.exit("demo: the base's weights changed during adapter training: this is a bug")
    return 0


if __name__ == "__main__":
    sys.exit(main())
