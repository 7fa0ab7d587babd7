#!/usr/bin/env python
"""K-Adapter end to end on a CPU, on the sample data shipped in examples/data/ (``make demo``).

Every step is one of the project's commands, echoed before it runs so that it can be
copied (swap in ``roberta.large`` and the full data sets to reproduce the paper's set-up):

  1. collect the base's pre-training text from the samples (FewRel, SemEval train/dev,
     UD English-EWT, CosmosQA contexts; never the SemEval test sentences)
  2. ``kadapter-build-base``: a sentencepiece vocabulary and a small RoBERTa pre-trained
     with fairseq's masked_lm on that text
  3. ``data_prep``: FewRel -> relation data (fac); UD EWT -> dependency heads (lin);
     SemEval-2010 Task 8 -> TACRED JSON -> binarized relation classification
  4. ``kadapter-train`` the fac and the lin adapter with the base frozen, ``kadapter-export`` them
  5. check that the base's weights are bit-identical after adapter training
  6. ``kadapter-train`` on SemEval four ways: base only, +fac, +lin, +fac+lin
  7. ``kadapter-predict`` + ``kadapter-score`` (TACRED scorer: micro P/R/F1 without no_relation)
     on the SemEval test sample
  8. results.json, results.md and training_curves.png in the work directory

Everything is kept in ``--work-dir`` (default ``demo_output/``); a second run reuses every
step whose command and inputs are unchanged, and says so (``--fresh`` redoes all).
"""
import argparse
import csv
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(REPO, "examples", "data")
CONFIGS = os.path.join(REPO, "configs")
BIN = os.path.dirname(sys.executable)

FEWREL = os.path.join(SAMPLES, "fewrel", "fewrel_val_wiki_sample.json")
SEMEVAL = {split: os.path.join(SAMPLES, "semeval2010_task8", name) for split, name in
           [("train", "TRAIN_FILE_sample.TXT"), ("valid", "DEV_FILE_sample.TXT"), ("test", "TEST_FILE_FULL_sample.TXT")]}
EWT = os.path.join(SAMPLES, "ud_english_ewt", "en_ewt-ud-dev_sample.conllu")
COSMOSQA = os.path.join(SAMPLES, "cosmosqa", "valid_sample.csv")

# fine-tuning runs: (name, adapters)
RUNS = [("base", []), ("fac", ["fac"]), ("lin", ["lin"]), ("fac+lin", ["fac", "lin"])]


@dataclass(frozen=True)
class Size:
    """How big each step is. ``demo`` fits about 10 minutes on 2 CPU cores, ``ci`` a couple."""

    base: Dict[str, object]  # kadapter-build-base options
    plug_layers: str  # adapter plug-in points for this base (0 = embedding output)
    adapter: Dict[str, int]  # adapter layer sizes
    fac_updates: int
    lin_updates: int
    task_updates: int
    batch_size: int
    adapter_lr: float
    task_lr: float
    validations: int = 1  # validations during each fine-tuning run (for the curves)


SIZES = {
    "demo": Size(
        # 4 layers, H=128, 3,000 pieces: pre-trains in about 3 minutes on 2 cores and gets well under a
        # unigram model's loss (it uses context); larger sizes need more text than the samples hold
        base=dict(layers=4, dim=128, heads=4, ffn=512, max_positions=128, vocab_size=3000,
                  updates=600, batch_size=16, lr=2e-3),
        # the paper's {0, 11, 22} of 24 layers, scaled to 4 layers; adapter width = H/2
        plug_layers="0,2,3",
        adapter=dict(down_dim=64, layers=2, heads=4, ffn_dim=256),
        fac_updates=200, lin_updates=120, task_updates=220, batch_size=32,
        adapter_lr=2e-3, task_lr=2e-3, validations=4,
    ),
    "ci": Size(
        base=dict(layers=2, dim=32, heads=2, ffn=64, max_positions=128, vocab_size=1000,
                  updates=6, batch_size=8, lr=1e-3),
        plug_layers="0,1,2",
        adapter=dict(down_dim=16, layers=1, heads=2, ffn_dim=32),
        fac_updates=3, lin_updates=3, task_updates=4, batch_size=8,
        adapter_lr=1e-3, task_lr=1e-3, validations=1,
    ),
}

NOISE = ("INFO:", "tensorboardX", "found in sys.modules after import of package", "<frozen runpy>", "warnings.warn(",
         "pin_memory", "super().__init__(loader)")
LOG_LINE = re.compile(r"(?:\| |\[)(train_inner|train|valid)(?:\]\[INFO\] - | \| )(\{.*\})\s*$")


# ----------------------------------------------------------------------------------------------
# small helpers


def shown(path: str) -> str:
    """A path as the echoed commands show it: relative to the repository when inside it."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path, REPO)
    return path if rel.startswith("..") else rel


def tool(script: str, module: str):
    """``(argv prefix, shown prefix)`` of a console script, or ``python -m module`` when it is not installed."""
    path = os.path.join(BIN, script)
    if os.path.isfile(path):
        return [path], [script]
    return [sys.executable, "-m", module], ["python", "-m", module]


def quote(arg: str) -> str:
    """Shell quoting that keeps hydra's own quotes readable: ``"model.x='0,2,3'"``."""
    if "'" in arg and not re.search(r'["$`\\]', arg):
        return f'"{arg}"'
    return shlex.quote(arg)


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parse_fairseq_log(path: str) -> Dict[str, List[dict]]:
    """``{"train_inner": [...], "train": [...], "valid": [...]}`` from a ``--log-format json`` log."""
    out = {"train_inner": [], "train": [], "valid": []}
    if not os.path.isfile(path):
        return out
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = LOG_LINE.search(line)
            if m:
                try:
                    out[m.group(1)].append(json.loads(m.group(2)))
                except json.JSONDecodeError:
                    pass
    return out


def number(value) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


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
# running steps, with reuse


class Pipeline:
    def __init__(self, work: str, fresh: bool):
        self.work = work
        self.stamps = os.path.join(work, "stamps")
        self.logs = os.path.join(work, "logs")
        os.makedirs(self.stamps, exist_ok=True)
        os.makedirs(self.logs, exist_ok=True)
        self.fresh = fresh
        self.reused: List[str] = []
        self.ran: List[str] = []
        self.seconds: Dict[str, float] = {}
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        # libgomp's busy-waiting threads make small models many times slower on 2 shared cores
        self.env.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    def stamp_key(self, name: str) -> Optional[str]:
        path = os.path.join(self.stamps, name + ".json")
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("key_sha")

    def step(self, name, argv, display, outputs, deps=(), files=(), clean=(), updates=None, echo=True):
        """Run one command unless an earlier run did the same; returns its output lines.

        ``deps``: earlier steps whose results this one uses; ``files``: input files whose contents
        matter; ``clean``: paths removed before a (re)run, so that fairseq does not resume from an
        old checkpoint; ``updates``: expected training updates (a progress bar instead of the log)."""
        key = {
            "command": display,
            "deps": {d: self.stamp_key(d) for d in deps},
            "files": {shown(p): sha256_of(p) for p in files},
        }
        key_sha = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        stamp_path = os.path.join(self.stamps, name + ".json")
        log_path = os.path.join(self.logs, name + ".log")
        if not self.fresh and os.path.isfile(stamp_path) and all(os.path.exists(o) for o in outputs):
            with open(stamp_path, encoding="utf-8") as f:
                stamp = json.load(f)
            if stamp.get("key_sha") == key_sha:
                print(f"  [reuse] {name}: done by an earlier run ({shown(outputs[0]) if outputs else shown(log_path)})")
                self.reused.append(name)
                self.seconds[name] = stamp.get("seconds", 0.0)  # what the step took when it ran
                return stamp.get("output", [])
        if os.path.isfile(stamp_path):
            os.remove(stamp_path)
        for path in clean:
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
        print("  $ " + " ".join(quote(a) for a in display), flush=True)
        started = time.time()
        lines = self._execute(name, argv, log_path, updates, echo)
        self.seconds[name] = time.time() - started
        self.ran.append(name)
        missing = [o for o in outputs if not os.path.exists(o)]
        if missing:
            sys.exit(f"demo: step {name} did not write {', '.join(map(shown, missing))}; see {shown(log_path)}")
        kept = lines if len(lines) <= 200 else lines[-200:]
        with open(stamp_path, "w", encoding="utf-8") as f:
            json.dump({"key": key, "key_sha": key_sha, "seconds": round(self.seconds[name], 1), "output": kept}, f, indent=1)
        return lines

    def _execute(self, name, argv, log_path, updates, echo):
        from tqdm import tqdm

        bar = None
        if updates:
            bar = tqdm(total=updates, desc=f"  {name}", unit="upd", file=sys.stderr,
                       disable=not sys.stderr.isatty(), bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} upd [{elapsed}<{remaining}]{postfix}")
        lines = []
        with open(log_path, "w", encoding="utf-8") as log:
            proc = subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, bufsize=1)
            for line in proc.stdout:
                log.write(line)
                lines.append(line.rstrip("\n"))
                if bar is not None:
                    m = LOG_LINE.search(line)
                    if m and m.group(1) == "train_inner":
                        rec = json.loads(m.group(2))
                        done = int(number(rec.get("num_updates")) or 0)
                        bar.update(max(0, done - bar.n))
                        bar.set_postfix_str(f"loss {rec.get('loss')}")
                    if line.startswith("[build-base]") or line.startswith("kadapter-build-base"):
                        (bar.write if not bar.disable else print)("  " + line.rstrip("\n"))
                elif echo and not any(n in line for n in NOISE):
                    print("    " + line.rstrip("\n"), flush=True)
            code = proc.wait()
        if bar is not None:
            bar.close()
        if code != 0:
            tail = "\n".join("    " + l for l in lines[-40:])
            sys.exit(f"{tail}\ndemo: step {name} failed (exit {code}); full log: {shown(log_path)}")
        return lines


def train_summary(log_path: str, metric_keys=("accuracy", "uas", "f1")) -> str:
    log = parse_fairseq_log(log_path)
    inner = log["train_inner"]
    parts = []
    if inner:
        parts.append(f"{int(number(inner[-1].get('num_updates')) or 0)} updates, train loss "
                     f"{number(inner[0].get('loss')):.3f} -> {number(inner[-1].get('loss')):.3f}")
    if log["valid"]:
        last = log["valid"][-1]
        shown_metrics = [f"valid loss {number(last.get('valid_loss')):.3f}"]
        for k in metric_keys:
            if f"valid_{k}" in last:
                shown_metrics.append(f"valid {k} {number(last[f'valid_{k}']):.3f}")
        parts.append(", ".join(shown_metrics))
    return "; ".join(parts)


# ----------------------------------------------------------------------------------------------
# checks and reports


def check_base_unchanged(base_model: str, checkpoints: Dict[str, str]) -> Dict[str, dict]:
    """Compare every base tensor (``encoder.*``) of each adapter run's checkpoint with the base."""
    import logging

    import torch

    logging.getLogger("fairseq").setLevel(logging.WARNING)
    import kadapter_fairseq  # noqa: F401  (allow-lists what fairseq checkpoints hold)

    base = torch.load(base_model, map_location="cpu")["model"]
    base = {k: v for k, v in base.items() if k.startswith("encoder.")}
    out = {}
    for name, path in checkpoints.items():
        trained = torch.load(path, map_location="cpu")["model"]
        missing = [k for k in base if k not in trained]
        changed = [k for k in base if k in trained and not torch.equal(base[k], trained[k])]
        out[name] = {"checkpoint": shown(path), "tensors": len(base), "missing": missing, "changed": changed,
                     "identical": not missing and not changed}
    return out


def write_curves(path: str, groups: Dict[str, Dict[str, str]]) -> Optional[str]:
    """One panel per group, train loss against updates for each run (valid loss as dots)."""
    import logging

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq's import set the root logger to DEBUG
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no training_curves.png"
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.2))
    for ax, (title, runs) in zip(axes, groups.items()):
        for label, log_path in runs.items():
            log = parse_fairseq_log(log_path)
            pts = [(number(r.get("num_updates")), number(r.get("loss"))) for r in log["train_inner"]]
            pts = [(x, y) for x, y in pts if x is not None and y is not None]
            if not pts:
                continue
            (line,) = ax.plot(*zip(*pts), label=label)
            val = [(number(r.get("valid_num_updates")), number(r.get("valid_loss"))) for r in log["valid"]]
            val = [(x, y) for x, y in val if x is not None and y is not None]
            if val:
                ax.plot(*zip(*val), "o", color=line.get_color(), markersize=4)
        ax.set_title(title)
        ax.set_xlabel("updates")
        ax.set_ylabel("loss (base 2)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("training loss per run (lines: train, dots: validation)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def results_markdown(results: dict) -> str:
    b = results["base_model"]
    lines = [
        f"# K-Adapter demo results (size `{results['size']}`, fine-tuning `train_phase={results['train_phase']}`)",
        "",
        f"Base: {b['summary']}; masked-LM validation loss {b['valid_loss_before']:.3f} (random init) -> "
        f"{b['valid_loss_after']:.3f} bits/token (pre-trained); a unigram model scores {b['valid_unigram_bits']:.3f}.",
        "",
        "| run | adapters | test precision | test recall | test micro-F1 | test examples |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        lines.append(f"| {r['run']} | {', '.join(r['adapters']) or '(none)'} | {r['precision']:.4f} | {r['recall']:.4f} | "
                     f"**{r['f1']:.4f}** | {r['n']} |")
    lines += ["", "Micro P/R/F1 over the relations other than `no_relation` (SemEval's `Other`), TACRED's scorer.", ""]
    for name, check in results["base_unchanged"].items():
        verdict = "bit-identical" if check["identical"] else f"CHANGED ({len(check['changed'])} tensors)"
        lines.append(f"- base weights after {name} adapter training: {verdict} ({check['tensors']} tensors compared)")
    for name, summary in results["adapters"].items():
        lines.append(f"- {name} adapter: {summary}")
    lines.append("")
    return "\n".join(lines)


def print_table(results: dict):
    print()
    print(f"  {'run':<10}{'adapters':<12}{'precision':>10}{'recall':>10}{'micro-F1':>10}")
    for r in results["runs"]:
        print(f"  {r['run']:<10}{(','.join(r['adapters']) or '-'):<12}{r['precision']:>10.4f}{r['recall']:>10.4f}{r['f1']:>10.4f}")
    print()


# ----------------------------------------------------------------------------------------------


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="demo", help="demo: about 10 minutes on 2 cores; ci: tiny")
    p.add_argument("--work-dir", default=os.path.join(REPO, "demo_output"), help="where everything is built and kept")
    p.add_argument("--train-phase", choices=["finetune", "efficient"], default="efficient",
                   help="downstream: efficient = only fusion + head train (default: fits the time budget); "
                   "finetune = the base trains too, adapters frozen (the paper's setting, about 3x slower)")
    p.add_argument("--fresh", action="store_true", help="redo every step instead of reusing an earlier run's results")
    p.add_argument("--write-text", metavar="FILE", help="only write the base's pre-training text to FILE and exit")
    args = p.parse_args(argv)

    if args.write_text:
        counts = collect_text(args.write_text)
        print(f"wrote {sum(counts.values())} lines to {args.write_text}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return 0

    size = SIZES[args.size]
    work = os.path.abspath(args.work_dir)
    started = time.time()
    first_time = not os.path.isdir(os.path.join(work, "stamps"))
    print(f"K-Adapter demo (size {args.size}) in {shown(work)}")
    if not first_time and not args.fresh:
        print(f"  {shown(work)} holds an earlier run: its steps are reused where their command and inputs are unchanged "
              "(--fresh redoes everything)")
    pipe = Pipeline(work, args.fresh)
    py = [sys.executable]

    def d(*parts):
        return os.path.join(work, *parts)

    # 1 + 2: the base ---------------------------------------------------------------------------
    print("\n[1/8] the base's pre-training text (sample sentences; SemEval test sentences left out)")
    text = d("text", "base_text.txt")
    demo_script = os.path.join("examples", "demo.py")
    pipe.step("text", py + [os.path.join(REPO, demo_script), "--write-text", text],
              ["python", demo_script, "--write-text", shown(text)], [text],
              files=[FEWREL, EWT, COSMOSQA, SEMEVAL["train"], SEMEVAL["valid"]])

    print("\n[2/8] a small RoBERTa pre-trained with fairseq's masked_lm (reused when already built)")
    base_dir = d("base")
    argv, show = tool("kadapter-build-base", "kadapter_fairseq.tools.build_base")
    opts = ["--text", shown(text), "--out", shown(base_dir)]
    for k, v in size.base.items():
        opts += ["--" + k.replace("_", "-"), str(v)]
    # build_base keeps its own cache (build.json) and says when it reuses it; this step always runs it
    # (its stamp holds the model's hash, never the command's)
    pipe.step("base", argv + opts, show + opts, [os.path.join(base_dir, "model.pt")], deps=["text"],
              updates=int(size.base["updates"]))
    with open(os.path.join(base_dir, "build.json"), encoding="utf-8") as f:
        build = json.load(f)
    with open(os.path.join(pipe.stamps, "base.json"), "r+", encoding="utf-8") as f:
        stamp = json.load(f)  # later steps depend on the base's contents, not on the command that checked them
        stamp["key_sha"] = sha256_of(os.path.join(base_dir, "model.pt"))
        f.seek(0), f.truncate(), json.dump(stamp, f, indent=1)
    print(f"  base: {size.base['layers']} layers, H={size.base['dim']}, vocabulary {build['vocabulary']}; masked-LM "
          f"validation loss {build['valid_loss_before']:.3f} (random init) -> {build['valid_loss_after']:.3f} "
          f"bits/token (pre-trained); a unigram model scores {build['valid_unigram_bits']:.3f}")

    # 3: data -----------------------------------------------------------------------------------
    print("\n[3/8] data preparation with the base's tokenizer and dictionary")
    tok = ["--roberta-dir", shown(base_dir)]
    fewrel_bin, ewt_bin, semeval_bin = d("data", "fewrel"), d("data", "ewt"), d("data", "semeval")
    opts = [shown(FEWREL), "--out", shown(fewrel_bin), "--max-len", "64"] + tok
    pipe.step("data-fewrel", py + ["-m", "data_prep.fewrel"] + opts, ["python", "-m", "data_prep.fewrel"] + opts,
              [os.path.join(fewrel_bin, "prep.json")], deps=["base"], files=[FEWREL], clean=[fewrel_bin])
    opts = [shown(EWT), "--out", shown(ewt_bin), "--max-len", "64", "--long", "truncate"] + tok
    pipe.step("data-ewt", py + ["-m", "data_prep.conllu"] + opts, ["python", "-m", "data_prep.conllu"] + opts,
              [os.path.join(ewt_bin, "prep.json")], deps=["base"], files=[EWT], clean=[ewt_bin])
    semeval_json = {}
    for split, src in SEMEVAL.items():
        semeval_json[split] = d("data", "semeval_json", f"{split}.json")
        os.makedirs(os.path.dirname(semeval_json[split]), exist_ok=True)
        opts = ["--input", shown(src), "--output", shown(semeval_json[split])]
        pipe.step(f"semeval-{split}", py + ["-m", "data_prep.semeval"] + opts, ["python", "-m", "data_prep.semeval"] + opts,
                  [semeval_json[split]], files=[src])
    opts = []
    for split in SEMEVAL:
        opts += [f"--{split}", shown(semeval_json[split])]
    opts += ["--out", shown(semeval_bin), "--max-len", str(size.base["max_positions"])] + tok
    pipe.step("data-semeval", py + ["-m", "data_prep.tacred"] + opts, ["python", "-m", "data_prep.tacred"] + opts,
              [os.path.join(semeval_bin, "prep.json")], deps=["base", "semeval-train", "semeval-valid", "semeval-test"],
              clean=[semeval_bin])

    # 4: knowledge adapters ---------------------------------------------------------------------
    print("\n[4/8] knowledge adapters, base frozen: fac (FewRel relation classification), lin (dependency heads)")
    train_argv, train_show = tool("kadapter-train", "kadapter_fairseq.tools.train")
    export_argv, export_show = tool("kadapter-export", "kadapter_fairseq.tools.export")
    a = size.adapter
    adapter_model = [f"model.adapter_plug_layers='{size.plug_layers}'", f"model.adapter_down_dim={a['down_dim']}",
                     f"model.adapter_layers={a['layers']}", f"model.adapter_heads={a['heads']}",
                     f"model.adapter_ffn_dim={a['ffn_dim']}"]

    def hydra_common(run_dir, updates, lr, warmup):
        return [
            f"model.roberta_path={shown(base_dir)}",
            f"optimization.max_update={updates}", "optimization.max_epoch=0", f"optimization.lr=[{lr}]",
            f"lr_scheduler.total_num_update={updates}", f"lr_scheduler.warmup_updates={warmup}",
            f"dataset.batch_size={size.batch_size}", f"checkpoint.save_dir={shown(run_dir)}",
            "checkpoint.no_save_optimizer_state=true",
            "common.log_format=json", f"common.log_interval={max(1, min(10, updates // 20))}",
            f"common.user_dir={shown(os.path.join(REPO, 'kadapter_fairseq'))}",
            f"hydra.run.dir={shown(run_dir)}", "hydra.job.chdir=false",
        ]

    adapters = {}
    adapter_summaries = {}
    knowledge = [
        ("fac", "relation_pretrain_cpu", fewrel_bin, "data-fewrel", size.fac_updates),
        ("lin", "dependency_head_prediction_cpu", ewt_bin, "data-ewt", size.lin_updates),
    ]
    for name, config, data, data_step, updates in knowledge:
        run_dir = d("runs", f"{name}-adapter")
        opts = (["--config-dir", shown(CONFIGS), "--config-name", config, f"task.data={shown(data)}",
                 f"model.adapter_names='{name}'", "model.train_phase=knowledge"] + adapter_model
                + hydra_common(run_dir, updates, size.adapter_lr, max(1, updates // 10)))
        pipe.step(f"{name}-adapter", train_argv + opts, train_show + opts, [os.path.join(run_dir, "checkpoint_best.pt")],
                  deps=["base", data_step], files=[os.path.join(CONFIGS, config + ".yaml")], clean=[run_dir], updates=updates)
        adapter_summaries[name] = train_summary(os.path.join(pipe.logs, f"{name}-adapter.log"))
        print(f"  {name}: {adapter_summaries[name]}")
        adapters[name] = d("adapters", f"{name}.pt")
        os.makedirs(os.path.dirname(adapters[name]), exist_ok=True)
        opts = [shown(os.path.join(run_dir, "checkpoint_best.pt")), shown(adapters[name]), "--adapters", name]
        pipe.step(f"{name}-export", export_argv + opts, export_show + opts, [adapters[name]], deps=[f"{name}-adapter"])

    # 5: the base did not move --------------------------------------------------------------------
    print("\n[5/8] base weights after adapter training")
    unchanged = check_base_unchanged(os.path.join(base_dir, "model.pt"),
                                     {n: d("runs", f"{n}-adapter", "checkpoint_best.pt") for n in adapters})
    for name, check in unchanged.items():
        verdict = "bit-identical to model.pt" if check["identical"] else \
            f"CHANGED: {len(check['changed'])} tensors differ, {len(check['missing'])} missing"
        print(f"  after {name} adapter training: all {check['tensors']} base tensors {verdict}")

    # 6 + 7: downstream ---------------------------------------------------------------------------
    print(f"\n[6/8] SemEval-2010 Task 8 relation classification, four ways (train_phase={args.train_phase})")
    runs = []
    for run, names in RUNS:
        run_dir = d("runs", f"semeval-{args.train_phase}-{run.replace('+', '-')}")
        paths = ",".join(f"{n}={shown(adapters[n])}" for n in names)
        opts = (["--config-dir", shown(CONFIGS), "--config-name", "tacred_cpu", f"task.data={shown(semeval_bin)}",
                 f"task.max_positions={size.base['max_positions']}",
                 f"model.adapter_names='{','.join(names)}'", f"model.adapter_paths='{paths}'",
                 f"model.train_phase={args.train_phase}"] + adapter_model
                + hydra_common(run_dir, size.task_updates, size.task_lr, max(1, size.task_updates // 10)))
        if size.validations > 1:
            opts.append(f"dataset.validate_interval_updates={max(1, size.task_updates // size.validations)}")
        step = f"semeval-{args.train_phase}-{run}"
        pipe.step(step, train_argv + opts, train_show + opts, [os.path.join(run_dir, "checkpoint_last.pt")],
                  deps=["base", "data-semeval"] + [f"{n}-export" for n in names],
                  files=[os.path.join(CONFIGS, "tacred_cpu.yaml")], clean=[run_dir], updates=size.task_updates)
        print(f"  {run}: {train_summary(os.path.join(pipe.logs, step + '.log'))}")
        runs.append((run, names, run_dir, step))

    print("\n[7/8] predictions on the SemEval test sample, scored with the TACRED scorer")
    predict_argv, predict_show = tool("kadapter-predict", "kadapter_fairseq.predict")
    score_argv, score_show = tool("kadapter-score", "kadapter_fairseq.scoring.cli")
    rows = []
    for run, names, run_dir, step in runs:
        pred = os.path.join(run_dir, "test_predictions.jsonl")
        opts = ["--task", "tacred", "--checkpoint", shown(os.path.join(run_dir, "checkpoint_last.pt")),
                "--data-dir", shown(semeval_bin), "--input", shown(semeval_json["test"]), "--output", shown(pred), "--cpu"]
        pipe.step(f"{step}-predict", predict_argv + opts, predict_show + opts, [pred], deps=[step], echo=False)
        opts = ["--task", "tacred", "--gold", shown(semeval_json["test"]), "--pred", shown(pred)]
        out = pipe.step(f"{step}-score", score_argv + opts, score_show + opts, [], deps=[f"{step}-predict"], echo=False)
        score = json.loads(next(l for l in reversed(out) if l.startswith("{")))
        print(f"    {run}: " + json.dumps(score))
        log = parse_fairseq_log(os.path.join(pipe.logs, step + ".log"))
        valid_f1 = number(log["valid"][-1].get("valid_f1")) if log["valid"] else None
        rows.append({"run": run, "adapters": names, "train_phase": args.train_phase, "updates": size.task_updates,
                     "precision": score["precision"], "recall": score["recall"], "f1": score["f1"], "n": score["n"],
                     "missing": score["missing"], "valid_f1": valid_f1, "checkpoint": shown(os.path.join(run_dir, "checkpoint_last.pt"))})

    # 8: reports ----------------------------------------------------------------------------------
    print("\n[8/8] results")
    results = {
        "size": args.size,
        "train_phase": args.train_phase,
        "base_model": {"dir": shown(base_dir), "summary": f"{size.base['layers']} layers, H={size.base['dim']}, "
                       f"vocabulary {build['vocabulary']}", "valid_loss_before": build["valid_loss_before"],
                       "valid_loss_after": build["valid_loss_after"], "valid_unigram_bits": build["valid_unigram_bits"],
                       "build": build["request"]},
        "adapters": adapter_summaries,
        "adapter_files": {n: shown(p) for n, p in adapters.items()},
        "base_unchanged": unchanged,
        "base_unchanged_ok": all(c["identical"] for c in unchanged.values()),
        "runs": rows,
        "size_settings": asdict(size),
        "steps_run": pipe.ran,
        "steps_reused": pipe.reused,
        "step_seconds": {k: round(v, 1) for k, v in pipe.seconds.items()},
        "wall_seconds": round(time.time() - started, 1),
    }
    with open(d("results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    with open(d("results.md"), "w", encoding="utf-8") as f:
        f.write(results_markdown(results))
    problem = write_curves(d("training_curves.png"), {
        # build_base keeps fairseq's log beside the base (the step's own log says "reusing" on later runs)
        "base RoBERTa (masked LM)": {"base": os.path.join(base_dir, "work", "train.log")},
        "knowledge adapters (base frozen)": {f"{n} adapter": os.path.join(pipe.logs, f"{n}-adapter.log") for n in adapters},
        f"SemEval fine-tuning ({args.train_phase})": {run: os.path.join(pipe.logs, step + ".log") for run, _, _, step in runs},
    })
    print_table(results)
    print(f"  wrote {shown(d('results.json'))}, {shown(d('results.md'))}" +
          (f"; {problem}" if problem else f", {shown(d('training_curves.png'))}"))
    if pipe.reused:
        print(f"  reused {len(pipe.reused)} of {len(pipe.reused) + len(pipe.ran)} steps from an earlier run "
              f"(--fresh redoes them)")
    print(f"  total time {results['wall_seconds'] / 60:.1f} min")
    if not results["base_unchanged_ok"]:
        sys.exit("demo: the base's weights changed during adapter training: this is a bug")
    return 0


if __name__ == "__main__":
    sys.exit(main())
