"""A study's statistics and statements, from an experiment's run directories.

``kadapter-experiment``'s report calls ``study_section(out_dir, cfg_dict, rows)`` when the
experiment config has a ``study:`` section (``examples/experiments/knowledge_transfer.yaml``,
design in ``docs/studies/knowledge_transfer.md``). The section names the study's *arms* and, for
each downstream phase, the runner variant that implements the arm, the reference arm, and the
hypotheses::

    study:
      task: fewrel_kt                 # the experiment task the study reads
      reference: no-knowledge         # every arm's difference to this one gets an interval
      negative_label: no_relation     # the TACRED scorer's negative label (micro-F1 leaves it out)
      n_boot: 1000
      seed: 0
      arms:                           # arm -> {phase: variant}
        fac: {finetune: fac-finetune, efficient: fac-efficient}
        no-knowledge: {finetune: no-knowledge-finetune, efficient: no-knowledge-efficient}
      hypotheses:
        - {id: H1, arm: fac, versus: no-knowledge, claim: "knowledge-trained adapters help beyond their parameters"}

Everything is computed from the prediction files: a run's score is TACRED's micro-F1 of its
predictions against the gold file (the number ``kadapter-score`` prints; the runner's
``metrics.json`` is compared with it), and the difference between two arms gets a paired
bootstrap interval over test examples, pooled across seeds (``bootstrap_diff``).
"""
import json
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError, DataError

NEGATIVE = "no_relation"
SEED_DIR = re.compile(r"^seed(\d+)$")
SIZE_DIR = re.compile(r"^(\d+(?:\.\d+)?)(?:-(per-label|examples))?$")
PLOT_FILE = "study.png"


# ---------------------------------------------------------------------------------------------- the statistic


def relation_counts(gold: Sequence[str], pred: Sequence[Optional[str]], negative: str = NEGATIVE) -> np.ndarray:
    """Per example ``[tp, fp, fn]`` as TACRED's scorer counts them (``None``: a missing prediction,
    which is a wrong positive guess, as the scorer treats it)."""
    out = np.zeros((len(gold), 3))
    for i, (g, p) in enumerate(zip(gold, pred)):
        correct = p is not None and p == g
        if p is None or p != negative:
            out[i, 0] = correct
            out[i, 1] = not correct
        if g != negative and not correct:
            out[i, 2] = 1
    return out


def micro_f1(counts: np.ndarray) -> np.ndarray:
    """Micro-F1 = 2 TP / (2 TP + FP + FN) over the last axis ``[tp, fp, fn]`` (1.0 when nothing is counted)."""
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 1.0)


def bootstrap_diff(gold: Sequence[str], preds_a: Sequence[Sequence[Optional[str]]], preds_b: Sequence[Sequence[Optional[str]]],
                   negative: str = NEGATIVE, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Paired bootstrap of micro-F1(a) - micro-F1(b), pooled across seeds.

    ``preds_a`` / ``preds_b``: one prediction list per seed, each aligned with ``gold``. A replicate
    draws ``len(gold)`` test examples with replacement; every seed of both arms is scored on that
    same draw, and an arm's score is its micro-F1 over all its seeds' predictions together (the
    counts pooled). The interval is the percentile interval of the replicates' differences.
    """
    n = len(gold)
    if n == 0:
        raise ValueError("no test example to resample")
    if not preds_a or not preds_b:
        raise ValueError("each arm needs at least one seed's predictions")
    per_example = []
    for preds in (preds_a, preds_b):
        for p in preds:
            if len(p) != n:
                raise ValueError(f"a prediction list has {len(p)} entries for {n} gold examples")
        # counts summed over seeds per example: the same draw applies to every seed
        per_example.append(sum(relation_counts(gold, p, negative) for p in preds))
    point = float(micro_f1(per_example[0].sum(0)) - micro_f1(per_example[1].sum(0)))
    rng = np.random.default_rng(seed)
    # how often each example is drawn in each replicate (a multinomial draw = resampling indices)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    diffs = micro_f1(weights @ per_example[0]) - micro_f1(weights @ per_example[1])
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return {"diff": point, "low": float(low), "high": float(high), "level": level, "n_boot": n_boot,
            "n_examples": n, "seeds_a": len(preds_a), "seeds_b": len(preds_b)}


def statement(hypothesis: dict, where: str, ci: dict) -> str:
    """One sentence saying whether the interval of ``arm - versus`` excludes zero."""
    arm, versus, claim = hypothesis["arm"], hypothesis["versus"], hypothesis.get("claim", "")
    span = f"[{ci['low']:+.3f}, {ci['high']:+.3f}]"
    head = f"{hypothesis.get('id', '')} ({where}): {arm} - {versus} = {ci['diff']:+.3f}, 95% interval {span}"
    if ci["low"] > 0:
        return f"{head} excludes zero: {arm} scores higher than {versus}" + (f", evidence that {claim}." if claim else ".")
    if ci["high"] < 0:
        against = f", evidence against the claim that {claim}." if claim else "."
        return f"{head} excludes zero, below it: {arm} scores lower than {versus}{against}"
    return f"{head} includes zero: no evidence that {claim or f'{arm} differs from {versus}'}."


# ---------------------------------------------------------------------------------------------- reading runs


def read_gold(path: str) -> Tuple[List[str], List[str]]:
    """``(ids, relations)`` of a TACRED JSON gold file, ids as the scorer compares them."""
    from ..data.downstream import read_relation_records
    from ..scoring.predictions import normalize_id

    ids, labels = [], []
    for rec in read_relation_records(gold_path_check(path)):
        ids.append(normalize_id(rec.id))
        labels.append(rec.relation)
    return ids, labels


def gold_path_check(path: str) -> str:
    if not os.path.isfile(path):
        raise DataError(path, None, "gold file not found")
    return path


def prediction_file(run_dir: str) -> Optional[str]:
    """The run's prediction file (JSON lines); ``metrics.json`` may name it, else the one ``*.jsonl``."""
    metrics = os.path.join(run_dir, "metrics.json")
    if os.path.isfile(metrics):
        with open(metrics, encoding="utf-8") as f:
            named = json.load(f).get("predictions")
        if isinstance(named, str):
            path = named if os.path.isabs(named) else os.path.join(run_dir, named)
            if os.path.isfile(path):
                return path
    found = sorted(n for n in os.listdir(run_dir) if n.endswith(".jsonl"))
    if len(found) > 1:
        preferred = [n for n in found if "pred" in n]
        found = preferred or found
    return os.path.join(run_dir, found[0]) if found else None


def read_run(run_dir: str, gold_ids: Sequence[str]) -> List[Optional[str]]:
    """The run's predicted labels aligned with ``gold_ids`` (``None`` where an id is not predicted)."""
    from ..scoring.predictions import is_label, read_predictions

    path = prediction_file(run_dir)
    if path is None:
        raise DataError(run_dir, None, "no prediction file (*.jsonl) in the run directory")
    preds = read_predictions(path, "label", is_label)
    return [preds.get(i) for i in gold_ids]


def runner_metric(run_dir: str, metric: str) -> Optional[float]:
    """The metric the runner recorded in ``metrics.json`` (top level or under ``test``/``score``)."""
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        m = json.load(f)
    for holder in (m, m.get("test"), m.get("score"), m.get("scores")):
        if isinstance(holder, dict) and isinstance(holder.get(metric), (int, float)):
            return float(holder[metric])
    return None


def size_of(label: Optional[str]) -> Tuple[float, str]:
    """``(x value, x label)`` of a run directory's size component (``10-per-label``, ``0.05``, none)."""
    if label is None:
        return float("inf"), "all"
    m = SIZE_DIR.match(label)
    if not m:
        return float("nan"), label
    return float(m.group(1)), label


def collect_runs(task_dir: str, variant: str) -> Dict[Optional[str], Dict[int, str]]:
    """``{size label or None: {seed: run dir}}`` for one variant (only runs that finished: metrics.json)."""
    vdir = os.path.join(task_dir, variant)
    out: Dict[Optional[str], Dict[int, str]] = {}
    if not os.path.isdir(vdir):
        return out
    for name in sorted(os.listdir(vdir)):
        path = os.path.join(vdir, name)
        m = SEED_DIR.match(name)
        if m:
            if os.path.isfile(os.path.join(path, "metrics.json")):
                out.setdefault(None, {})[int(m.group(1))] = path
            continue
        if os.path.isdir(path):
            for sub in sorted(os.listdir(path)):
                m = SEED_DIR.match(sub)
                if m and os.path.isfile(os.path.join(path, sub, "metrics.json")):
                    out.setdefault(name, {})[int(m.group(1))] = os.path.join(path, sub)
    return out


# ---------------------------------------------------------------------------------------------- the section


def _study_config(cfg: dict) -> dict:
    study = cfg.get("study")
    if not isinstance(study, dict):
        raise ConfigError("study: expected a mapping (arms, reference, hypotheses)")
    arms = study.get("arms")
    if not isinstance(arms, dict) or not arms:
        raise ConfigError("study.arms: expected a mapping arm -> {phase: variant}")
    variants = set(cfg.get("variants") or [])
    for arm, phases in arms.items():
        if not isinstance(phases, dict) or not phases:
            raise ConfigError(f"study.arms.{arm}: expected a mapping phase -> variant")
        for phase, variant in phases.items():
            if variants and variant not in variants:
                raise ConfigError(f"study.arms.{arm}.{phase}: {variant!r} is not one of the experiment's variants")
    reference = study.get("reference", "no-knowledge")
    if reference not in arms:
        raise ConfigError(f"study.reference: {reference!r} is not one of study.arms")
    for i, h in enumerate(study.get("hypotheses") or []):
        for key in ("arm", "versus"):
            if not isinstance(h, dict) or h.get(key) not in arms:
                raise ConfigError(f"study.hypotheses[{i}].{key}: expected one of study.arms")
    tasks = list((cfg.get("tasks") or {}).keys())
    task = study.get("task") or (tasks[0] if len(tasks) == 1 else None)
    if task not in tasks:
        raise ConfigError(f"study.task: expected one of the experiment's tasks ({', '.join(tasks)})")
    return {**study, "reference": reference, "task": task}


def _gold_of(cfg: dict, task: str) -> str:
    from .config import project_root

    t = cfg["tasks"][task]
    score = t.get("score") or {}
    gold = score.get("gold") or ((t.get("data") or {}).get("splits") or {}).get(score.get("split", "test"))
    if not gold:
        raise ConfigError(f"tasks.{task}.score.gold: the study needs the gold file of the scored split")
    return gold if os.path.isabs(gold) else os.path.join(project_root(), gold)


def analyse(out_dir: str, cfg: dict) -> dict:
    """Every number of the study section: per arm, phase and size the seeds' scores; per comparison the interval."""
    study = _study_config(cfg)
    task = study["task"]
    negative = study.get("negative_label", NEGATIVE)
    n_boot = int(study.get("n_boot", 1000))
    boot_seed = int(study.get("seed", 0))
    gold_ids, gold = read_gold(_gold_of(cfg, task))
    task_dir = os.path.join(out_dir, "runs", task)

    cells: Dict[tuple, dict] = {}  # (arm, phase, size label) -> {seeds, preds, scores}
    mismatches = []
    for arm, phases in study["arms"].items():
        for phase, variant in phases.items():
            for size, seeds in collect_runs(task_dir, variant).items():
                cell = {"seeds": [], "preds": [], "scores": [], "variant": variant}
                for s in sorted(seeds):
                    preds = read_run(seeds[s], gold_ids)
                    score = float(micro_f1(relation_counts(gold, preds, negative).sum(0)))
                    recorded = runner_metric(seeds[s], "f1")
                    if recorded is not None and abs(recorded - score) > 1e-6:
                        mismatches.append(f"{seeds[s]}: metrics.json f1 {recorded:.6f}, predictions {score:.6f}")
                    cell["seeds"].append(s)
                    cell["preds"].append(preds)
                    cell["scores"].append(score)
                cells[(arm, phase, size)] = cell

    phases = sorted({p for (_, p, _) in cells})
    sizes = sorted({s for (_, _, s) in cells}, key=lambda s: size_of(s)[0])
    table = []
    for (arm, phase, size), cell in cells.items():
        v = np.array(cell["scores"])
        x = size_of(size)[0]
        table.append({"arm": arm, "phase": phase, "size": size, "x": x if np.isfinite(x) else None, "variant": cell["variant"],
                      "seeds": cell["seeds"], "values": [round(x, 6) for x in cell["scores"]],
                      "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)})

    def compare(arm, versus, phase, size):
        a, b = cells.get((arm, phase, size)), cells.get((versus, phase, size))
        if not a or not b:
            return None
        ci = bootstrap_diff(gold, a["preds"], b["preds"], negative, n_boot, boot_seed)
        ci.update(arm=arm, versus=versus, phase=phase, size=size,
                  mean_diff=float(np.mean(a["scores"]) - np.mean(b["scores"])),
                  excludes_zero=bool(ci["low"] > 0 or ci["high"] < 0))
        return ci

    reference = study["reference"]
    comparisons = [c for arm in study["arms"] if arm != reference for phase in phases for size in sizes
                   if (c := compare(arm, reference, phase, size)) is not None]
    hypotheses = []
    for h in study.get("hypotheses") or []:
        for phase in phases:
            for size in sizes:
                ci = compare(h["arm"], h["versus"], phase, size)
                if ci is None:
                    continue
                where = f"{phase}, {size_label(size)}"
                hypotheses.append({"id": h.get("id"), "arm": h["arm"], "versus": h["versus"], "phase": phase,
                                   "size": size, "interval": ci, "statement": statement(h, where, ci)})
    return {"task": task, "reference": reference, "metric": "micro-F1 (TACRED scorer, test)", "n_test": len(gold),
            "n_boot": n_boot, "bootstrap_seed": boot_seed, "phases": phases, "sizes": sizes,
            "arms": list(study["arms"]),
            "table": sorted(table, key=lambda r: (r["phase"], list(study["arms"]).index(r["arm"]), size_of(r["size"])[0])),
            "comparisons": comparisons, "hypotheses": hypotheses, "metric_mismatches": mismatches}


def size_label(size: Optional[str]) -> str:
    if size is None:
        return "all training examples"
    x, label = size_of(size)
    if label.endswith("-per-label"):
        return f"{int(x)} per relation"
    return label


def markdown(result: dict, plot: Optional[str]) -> str:
    arms, phases, sizes = result["arms"], result["phases"], result["sizes"]
    by = {(r["arm"], r["phase"], r["size"]): r for r in result["table"]}
    lines = [f"## Study: {result['task']} (test {result['metric']}, {result['n_test']} test examples)", ""]
    for phase in phases:
        lines += [f"### train_phase={phase}: mean ± std over seeds (n seeds)", "",
                  "| arm | " + " | ".join(size_label(s) for s in sizes) + " |",
                  "|---|" + "---|" * len(sizes)]
        for arm in arms:
            cells = []
            for s in sizes:
                r = by.get((arm, phase, s))
                cells.append(f"{r['mean']:.3f} ± {r['std']:.3f} ({r['n']})" if r else "–")
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"### Difference to `{result['reference']}` (pooled micro-F1, paired bootstrap over test examples "
              f"pooled across seeds, {result['n_boot']} replicates, 95% percentile interval)", "",
              "| phase | size | arm | difference | 95% interval | excludes 0 |", "|---|---|---|---|---|---|"]
    for c in result["comparisons"]:
        lines.append(f"| {c['phase']} | {size_label(c['size'])} | {c['arm']} | {c['diff']:+.3f} | "
                     f"[{c['low']:+.3f}, {c['high']:+.3f}] | {'yes' if c['excludes_zero'] else 'no'} |")
    lines += ["", "### Hypotheses", ""]
    lines += [f"- {h['statement']}" for h in result["hypotheses"]] or ["- (no hypothesis could be tested: runs missing)"]
    lines += ["", "The interval covers test-example sampling for these seeds; the seeds' spread is the ± std above. "
              "Intervals are per comparison (no multiplicity correction)."]
    if result["metric_mismatches"]:
        lines += ["", "**Warning**: a run's metrics.json disagrees with its predictions: " + "; ".join(result["metric_mismatches"])]
    if plot:
        lines += ["", f"![score against labelled examples per relation]({os.path.basename(plot)})"]
    return "\n".join(lines) + "\n"


def write_plot(path: str, result: dict) -> Optional[str]:
    """Score against labelled examples per relation, a line per arm with a ±1 std band, a panel per phase."""
    import logging

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    phases = result["phases"]
    if not phases:
        return None
    fig, axes = plt.subplots(1, len(phases), figsize=(5.4 * len(phases), 4.2), squeeze=False, sharey=True)
    for ax, phase in zip(axes[0], phases):
        for arm in result["arms"]:
            rows = sorted((r for r in result["table"] if r["arm"] == arm and r["phase"] == phase and r["x"] is not None),
                          key=lambda r: r["x"])
            if not rows:
                continue
            x = np.array([r["x"] for r in rows])
            m = np.array([r["mean"] for r in rows])
            s = np.array([r["std"] for r in rows])
            (line,) = ax.plot(x, m, marker="o", label=arm)
            ax.fill_between(x, m - s, m + s, color=line.get_color(), alpha=0.15)
        ax.set_xscale("log")
        xs = sorted({r["x"] for r in result["table"] if r["x"] is not None})
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
        ax.set_title(f"train_phase={phase}")
        ax.set_xlabel("labelled examples per relation")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test micro-F1 (mean ± std over seeds)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def study_section(out_dir: str, cfg_dict: dict, rows=None) -> Tuple[str, dict]:
    """``(markdown, json)`` of the study, and ``OUT_DIR/study.png``; ``rows`` (results.json's) are not needed:
    every number is recomputed from the prediction files so the intervals and the table agree."""
    result = analyse(out_dir, cfg_dict)
    plot = write_plot(os.path.join(out_dir, PLOT_FILE), result)
    result["plot"] = os.path.basename(plot) if plot else None
    return markdown(result, plot), result
