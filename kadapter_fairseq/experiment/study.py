"""A study's statistics and statements, from an experiment's run results.

``kadapter-experiment``'s report calls ``study_section(layout, record, results)`` when the
experiment has a ``study:`` section (validated with the rest of the config before anything
trains: ``config._study``; ``examples/experiments/knowledge_transfer.yaml``, design in
``docs/studies/knowledge_transfer.md``). The section names the study's *arms* and, for each
downstream phase, the variant that implements the arm, the reference arm, and the hypotheses::

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
predictions against the gold file, counted by ``kadapter_fairseq/scoring/classification.py`` (the number
``kadapter-score`` gives; the runner's ``metrics.json`` is compared with it). The table shows mean
± std over units (downstream seeds, or knowledge seeds each scored as the mean of its downstream
seeds, as ``report.units``). The difference between two arms gets two statistics, which answer
different questions:

- a paired bootstrap interval over test examples, pooled across all their runs (``bootstrap_diff``;
  the study's pre-registered interval): how much the difference could move with another draw of
  test examples, *given these runs*; it does not see how much another knowledge or downstream seed
  would move it;
- Welch's test over the units' scores (``stats.compare``, the rule of every report): whether the
  difference exceeds the spread between units, i.e. between knowledge seeds when the experiment
  trains its knowledge with several (each the mean of its downstream seeds). With one knowledge seed
  the units are downstream seeds, and the knowledge training's own spread is not measured at all.

With two training sizes or more, the section also lists each hypothesis's difference by size (the
design's expectation about how it changes with labelled data is judged in the study's document).
"""
import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import DataError
from ..scoring.classification import NO_RELATION, relation_example_counts
from .layout import STUDY_PNG, Layout
from .plan import ExperimentRecord
from . import stats
from .report import RunResult, unit_score, units
from .sizes import TrainSize

NEGATIVE = NO_RELATION
PLOT_FILE = STUDY_PNG


# ---------------------------------------------------------------------------------------------- the statistic


def relation_counts(gold: Sequence[str], pred: Sequence[Optional[str]], negative: str = NEGATIVE) -> np.ndarray:
    """Per example ``[tp, fp, fn]`` as TACRED's scorer counts them (``None``: a missing prediction,
    which is a wrong positive guess, as the scorer treats it)."""
    out = np.zeros((len(gold), 3))
    for i, (g, p) in enumerate(zip(gold, pred)):
        out[i] = relation_example_counts(g, p, negative)
    return out


def micro_f1(counts: np.ndarray) -> np.ndarray:
    """Micro-F1 = 2 TP / (2 TP + FP + FN) over the last axis ``[tp, fp, fn]`` (1.0 when nothing is counted)."""
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 1.0)


def bootstrap_diff(gold: Sequence[str], preds_a: Sequence[Sequence[Optional[str]]], preds_b: Sequence[Sequence[Optional[str]]],
                   negative: str = NEGATIVE, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Paired bootstrap of micro-F1(a) - micro-F1(b), pooled across runs.

    ``preds_a`` / ``preds_b``: one prediction list per run, each aligned with ``gold``. A replicate
    draws ``len(gold)`` test examples with replacement; every run of both arms is scored on that
    same draw, and an arm's score is its micro-F1 over all its runs' predictions together (the
    counts pooled). The interval is the percentile interval of the replicates' differences; the
    draws come from ``numpy.random.default_rng(seed)`` (the study pre-registered this method, so
    its published intervals are reproducible to the last digit).
    """
    n = len(gold)
    if n == 0:
        raise ValueError("no test example to resample")
    if not preds_a or not preds_b:
        raise ValueError("each arm needs at least one run's predictions")
    per_example = []
    for preds in (preds_a, preds_b):
        for p in preds:
            if len(p) != n:
                raise ValueError(f"a prediction list has {len(p)} entries for {n} gold examples")
        # counts summed over runs per example: the same draw applies to every run
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


def statement(hypothesis: dict, where: str, ci: dict, welch: Optional[dict] = None) -> str:
    """One sentence saying whether the interval of ``arm - versus`` excludes zero, and (given ``welch``,
    a ``unit_test``) whether the difference exceeds the spread between units."""
    arm, versus, claim = hypothesis["arm"], hypothesis["versus"], hypothesis.get("claim", "")
    span = f"[{ci['low']:+.3f}, {ci['high']:+.3f}]"
    head = f"{hypothesis.get('id', '')} ({where}): {arm} - {versus} = {ci['diff']:+.3f}, 95% interval {span}"
    if ci["low"] > 0:
        text = f"{head} excludes zero: {arm} scores higher than {versus}" + (f", evidence that {claim}." if claim else ".")
    elif ci["high"] < 0:
        against = f", evidence against the claim that {claim}." if claim else "."
        text = f"{head} excludes zero, below it: {arm} scores lower than {versus}{against}"
    else:
        text = f"{head} includes zero: no evidence that {claim or f'{arm} differs from {versus}'}."
    if welch is None:
        return text
    text = f"{text} {unit_sentence(welch)}"
    if welch["unit"] == "knowledge_seed" and welch["exceeds_noise"] is not None:
        text = f"{text} {joint_verdict(ci, welch, arm, versus)}"
    return text


def joint_verdict(ci: dict, welch: dict, arm: str, versus: str) -> str:
    """The reading rule of a design with knowledge seeds: a difference is established only when the interval
    over test examples and Welch's test over knowledge seeds both exclude it being zero, in the same direction."""
    up, down = ci["low"] > 0, ci["high"] < 0
    beyond = welch["exceeds_noise"]
    if beyond and up and welch["diff"] > 0:
        return f"Both statistics agree: {arm} scores higher than {versus}."
    if beyond and down and welch["diff"] < 0:
        return f"Both statistics agree: {arm} scores lower than {versus}."
    if not beyond and not up and not down:
        return f"Neither statistic separates {arm} from {versus}."
    return "The two statistics disagree: not established."


def unit_test(a: Sequence[float], b: Sequence[float], unit: str) -> dict:
    """Welch's test over two arms' unit scores (``stats.compare``), with the units it saw."""
    out = stats.compare(list(a), list(b))
    out.update(unit=unit, n_a=len(a), n_b=len(b))
    return out


def unit_sentence(w: dict) -> str:
    units_word = "knowledge seeds" if w["unit"] == "knowledge_seed" else "seeds"
    head = f"Over {units_word} (n = {w['n_a']} and {w['n_b']}): {w['diff']:+.3f}"
    if w["exceeds_noise"] is None:
        return f"{head}, too few units for a noise estimate."
    spread = "the knowledge-seed spread" if w["unit"] == "knowledge_seed" else "the seed spread"
    verdict = "exceeds" if w["exceeds_noise"] else "does not exceed"
    return f"{head}, Welch p {p_text(w['p'])}: {verdict} {spread}."


def p_text(p: Optional[float]) -> str:
    return "–" if p is None else "< 0.001" if p < 0.001 else f"= {p:.3f}"


def trend_sentence(h: dict, phase: str, points: List[Tuple[TrainSize, dict]]) -> str:
    """A hypothesis's difference at each training size, smallest first, and which way it moved."""
    values = ", ".join(f"{ci['diff']:+.3f} ({size_label(size)})" for size, ci in points)
    first, last = points[0][1]["diff"], points[-1][1]["diff"]
    way = "larger" if last > first else "smaller" if last < first else "the same"
    return (f"{h.get('id', '')} ({phase}): {h['arm']} - {h['versus']} = {values}: {way} at the largest training "
            f"size than at the smallest ({last - first:+.3f}).")


# ---------------------------------------------------------------------------------------------- reading runs


def read_gold(path: str) -> Tuple[List[str], List[str]]:
    """``(ids, relations)`` of a TACRED JSON gold file, ids as the scorer compares them."""
    from ..data.downstream import read_relation_records
    from ..scoring.predictions import normalize_id

    if not os.path.isfile(path):
        raise DataError(path, None, "gold file not found")
    ids, labels = [], []
    for rec in read_relation_records(path):
        ids.append(normalize_id(rec.id))
        labels.append(rec.relation)
    return ids, labels


def read_predictions(run: RunResult, gold_ids: Sequence[str]) -> List[Optional[str]]:
    """The run's predicted labels aligned with ``gold_ids`` (``None`` where an id is not predicted)."""
    from ..scoring.predictions import is_label, read_predictions as read

    if not run.predictions or not os.path.isfile(run.predictions):
        raise DataError(run.predictions or run.dir, None, "the run's predictions file is missing")
    preds = read(run.predictions, "label", is_label)
    return [preds.get(i) for i in gold_ids]


def size_label(size: TrainSize) -> str:
    return "all training examples" if size.is_full else size.text(per="relation")


# ---------------------------------------------------------------------------------------------- the section


def analyse(record: ExperimentRecord, results: List[RunResult]) -> Tuple[dict, List[TrainSize]]:
    """Every number of the study section (per arm, phase and size the units' scores; per comparison the
    interval), and the training sizes in table order."""
    study = record.study
    task = study.task
    negative = study.negative_label
    gold_ids, gold = read_gold(record.tasks[task].gold)
    by_kseed = record.several_knowledge_seeds
    unit_kind = "knowledge_seed" if by_kseed else "seed"

    variant_of = {(arm, phase): variant for arm, phases in study.arms.items() for phase, variant in phases.items()}
    cells: Dict[Tuple[str, str, TrainSize], dict] = {}  # (arm, phase, size) -> {runs, preds, scores}
    mismatches = []
    for (arm, phase), variant in variant_of.items():
        mine = [r for r in results if r.task == task and r.variant == variant]
        for size in sorted({r.size for r in mine}, key=TrainSize.sort_key):
            cell = {"variant": variant, "runs": [], "preds": []}
            for unit, runs in units([r for r in mine if r.size == size], by_kseed):
                for r in runs:
                    preds = read_predictions(r, gold_ids)
                    score = float(micro_f1(relation_counts(gold, preds, negative).sum(0)))
                    if "f1" in r.scores and abs(float(r.scores["f1"]) - score) > 1e-6:
                        mismatches.append(f"{r.dir}: metrics.json f1 {float(r.scores['f1']):.6f}, predictions {score:.6f}")
                    # the unit's score is computed from the predictions too, so table and intervals agree
                    r = dataclasses.replace(r, value=score)
                    cell["runs"].append(r)
                    cell["preds"].append(preds)
            cells[(arm, phase, size)] = cell

    phases = sorted({p for (_, p, _) in cells})
    sizes = sorted({s for (_, _, s) in cells}, key=lambda s: s.x)
    table = []
    for (arm, phase, size), cell in cells.items():
        grouped = units(cell["runs"], by_kseed)
        v = np.array([unit_score(runs) for _, runs in grouped])
        row = {"arm": arm, "phase": phase, "size": size.label, "x": None if size.is_full else size.x,
               "variant": cell["variant"], "seeds": [u for u, _ in grouped], "values": [round(x, 6) for x in v.tolist()],
               "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
        if by_kseed:
            row["unit"] = "knowledge_seed"
            row["runs"] = {str(u): [r.seed for r in runs] for u, runs in grouped}
        table.append(row)

    def compare(arm, versus, phase, size):
        a, b = cells.get((arm, phase, size)), cells.get((versus, phase, size))
        if not a or not b:
            return None
        ci = bootstrap_diff(gold, a["preds"], b["preds"], negative, study.n_boot, study.seed)
        units_a = [unit_score(r) for _, r in units(a["runs"], by_kseed)]
        units_b = [unit_score(r) for _, r in units(b["runs"], by_kseed)]
        ci.update(arm=arm, versus=versus, phase=phase, size=size.label,
                  mean_diff=float(np.mean(units_a) - np.mean(units_b)),
                  excludes_zero=bool(ci["low"] > 0 or ci["high"] < 0),
                  welch=unit_test(units_a, units_b, unit_kind))
        return ci

    reference = study.reference
    comparisons = [c for arm in study.arms if arm != reference for phase in phases for size in sizes
                   if (c := compare(arm, reference, phase, size)) is not None]
    hypotheses, trends = [], []
    for h in study.hypotheses:
        for phase in phases:
            points = []
            for size in sizes:
                ci = compare(h["arm"], h["versus"], phase, size)
                if ci is None:
                    continue
                points.append((size, ci))
                hypotheses.append({"id": h.get("id"), "arm": h["arm"], "versus": h["versus"], "phase": phase,
                                   "size": size.label, "interval": ci,
                                   "statement": statement(h, f"{phase}, {size_label(size)}", ci, ci["welch"])})
            if len(points) > 1:
                trends.append({"id": h.get("id"), "arm": h["arm"], "versus": h["versus"], "phase": phase,
                               "diffs": {size.label: ci["diff"] for size, ci in points},
                               "change": points[-1][1]["diff"] - points[0][1]["diff"],
                               "statement": trend_sentence(h, phase, points)})
    arms = list(study.arms)
    return {"task": task, "reference": reference, "metric": "micro-F1 (TACRED scorer, test)", "n_test": len(gold),
            "n_boot": study.n_boot, "bootstrap_seed": study.seed, "unit": unit_kind, "seed_noise_rule": stats.rule(by_kseed),
            "phases": phases, "sizes": [s.label for s in sizes], "arms": arms,
            "table": sorted(table, key=lambda r: (r["phase"], arms.index(r["arm"]),
                                                   r["x"] if r["x"] is not None else float("inf"))),
            "comparisons": comparisons, "hypotheses": hypotheses, "trends": trends,
            "metric_mismatches": mismatches}, sizes


def markdown(result: dict, sizes: List[TrainSize], plot: Optional[str]) -> str:
    arms, phases = result["arms"], result["phases"]
    by = {(r["arm"], r["phase"], r["size"]): r for r in result["table"]}
    by_kseed = result["unit"] == "knowledge_seed"
    over = "knowledge seeds (n), each the mean of its downstream seeds" if by_kseed else "seeds (n seeds)"
    lines = [f"## Study: {result['task']} (test {result['metric']}, {result['n_test']} test examples)", ""]
    for phase in phases:
        lines += [f"### train_phase={phase}: mean ± std over {over}", "",
                  "| arm | " + " | ".join(size_label(s) for s in sizes) + " |",
                  "|---|" + "---|" * len(sizes)]
        for arm in arms:
            cells = []
            for s in sizes:
                r = by.get((arm, phase, s.label))
                cells.append(f"{r['mean']:.3f} ± {r['std']:.3f} ({r['n']})" if r else "–")
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        lines.append("")
    runs = "runs" if by_kseed else "seeds"
    units_word = "knowledge seeds" if by_kseed else "seeds"
    lines += [f"### Difference to `{result['reference']}`", "",
              f"Pooled micro-F1 difference with a paired bootstrap over test examples pooled across {runs} "
              f"({result['n_boot']} replicates, 95% percentile interval); beside it the difference of the mean unit "
              f"scores and Welch's test over units ({units_word}; p < {stats.ALPHA:g}: beyond the units' spread).", "",
              "| phase | size | arm | difference | 95% interval | excludes 0 | over units | Welch p | beyond unit spread |",
              "|---|---|---|---|---|---|---|---|---|"]
    label = {s.label: s for s in sizes}
    for c in result["comparisons"]:
        w = c["welch"]
        p = p_text(w["p"]).lstrip("= ")
        beyond = "–" if w["exceeds_noise"] is None else ("yes" if w["exceeds_noise"] else "no")
        lines.append(f"| {c['phase']} | {size_label(label[c['size']])} | {c['arm']} | {c['diff']:+.3f} | "
                     f"[{c['low']:+.3f}, {c['high']:+.3f}] | {'yes' if c['excludes_zero'] else 'no'} | "
                     f"{w['diff']:+.3f} (n={w['n_a']}, {w['n_b']}) | {p} | {beyond} |")
    lines += ["", "### Hypotheses", ""]
    lines += [f"- {h['statement']}" for h in result["hypotheses"]] or ["- (no hypothesis could be tested: runs missing)"]
    if result["trends"]:
        lines += ["", "### Over training sizes", ""] + [f"- {t['statement']}" for t in result["trends"]]
    if by_kseed:
        spread = ("The interval covers test-example sampling for these runs only; the spread between knowledge seeds "
                  "(each trained its knowledge anew and ran its own downstream seeds) is the ± std above and what "
                  "Welch's test weighs.")
    else:
        spread = ("The interval covers test-example sampling for these seeds; the seeds' spread is the ± std above and "
                  "what Welch's test weighs. Each knowledge entry was trained once: neither statistic sees how much "
                  "another knowledge training would move an arm.")
    lines += ["", f"{spread} Intervals and tests are per comparison (no multiplicity correction)."]
    if result["metric_mismatches"]:
        lines += ["", "**Warning**: a run's metrics.json disagrees with its predictions: "
                  + "; ".join(result["metric_mismatches"])]
    if plot:
        lines += ["", f"![score against labelled examples per relation]({os.path.basename(plot)})"]
    return "\n".join(lines) + "\n"


def write_plot(path: str, result: dict) -> Optional[str]:
    """Score against labelled examples per relation, a line per arm with a ±1 std band, a panel per phase."""
    import logging

    from .. import atomic

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
    spread = "knowledge seeds" if result["unit"] == "knowledge_seed" else "seeds"
    axes[0][0].set_ylabel(f"test micro-F1 (mean ± std over {spread})")
    if axes[0][-1].get_legend_handles_labels()[0]:
        axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def study_section(layout: Layout, record: ExperimentRecord, results: List[RunResult]) -> Tuple[str, dict]:
    """``(markdown, json)`` of the study, and ``DIR/study.png``. Every number is recomputed from the
    prediction files, so the intervals and the table agree."""
    result, sizes = analyse(record, results)
    plot = write_plot(layout.result(PLOT_FILE), result)
    result["plot"] = os.path.basename(plot) if plot else None
    return markdown(result, sizes, plot), result
