"""``kadapter-experiment report DIR``: results.json, results.md and results.png from the run results.

Everything here is computed from ``DIR/experiment.json`` (the ``ExperimentRecord``), ``DIR/plan.json``
(the ``RunSpec``s) and the runs' ``metrics.json`` files only, so a report rebuilt later, or after an
interrupted experiment was finished, is the same file as one written straight after an
uninterrupted run.

The unit of the statistics: with one knowledge seed, each downstream seed is a unit (a row's
values are the seeds' scores); with several knowledge seeds, each knowledge seed is a unit whose
score is the mean over its downstream seeds. Rows show mean ± sample std over units, and a
variant is compared with each of its controls by Welch's test over unit scores (``stats.welch``).
A probe task has one run per knowledge seed (the probe is deterministic), so its unit is the
knowledge seed, and with one knowledge seed its rows have n = 1.

A run with several scores (a task scored on several gold files, a probe over several
directories) gives one row per score (``part``); probe rows carry the majority baseline
(``majority``, chance) beside the score, in results.json and in results.md, and rows of a task
scored by TACRED's scorer its gold file's type baseline (``type_baseline``, ``baselines.py``).

An experiment with a ``positive_control:`` gets it first, in results.md and results.json, before
any arm's figure (``control.py``: when it does not hold, the arms' table is headed as
uncalibrated); one with ``hypotheses:`` gets a sentence per comparison (``hypotheses.py``).
"""
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .. import atomic
from ..errors import KAdapterError
from . import control as positive_control
from . import hypotheses as row_hypotheses
from . import stats
from .baselines import type_baseline
from .layout import METRICS, RESULTS_JSON, RESULTS_MD, RESULTS_PNG, Layout, run_file
from .plan import ExperimentRecord, RunSpec, load_record, load_runs
from .sizes import TrainSize, plot_positions


@dataclass
class RunResult:
    """One finished run: its spec's coordinates and what ``metrics.json`` recorded."""

    task: str
    variant: str
    size: TrainSize
    seed: int
    knowledge_seed: Optional[int]
    phase: str
    metric: str
    value: float
    dir: str
    predictions: Optional[str]  # absolute path of its predictions file
    scores: Dict = field(default_factory=dict)
    part: Optional[str] = None  # which of the run's scores (None: its only one)
    majority: Optional[float] = None  # the majority baseline of a probe score (chance)
    ranks: bool = True  # the run's ranking score (what metrics.json's value is)

    @classmethod
    def of(cls, run: RunSpec, metrics: dict) -> "RunResult":
        """The run's ranking score."""
        return cls.parts_of(run, metrics)[0]

    @classmethod
    def parts_of(cls, run: RunSpec, metrics: dict) -> List["RunResult"]:
        """One result per score of the run, the ranking one first."""
        parts = metrics.get("parts") or {None: {k: metrics.get(k) for k in ("value", "scores", "predictions")}}
        rank = metrics.get("rank")
        out = []
        for name in sorted(parts, key=lambda n: n != rank):
            p = parts[name]
            scores = p.get("scores") or {}
            out.append(cls(task=run.task, variant=run.variant, size=run.size, seed=run.seed,
                           knowledge_seed=run.knowledge_seed, phase=run.phase, metric=run.metric, value=float(p["value"]),
                           dir=run.dir, predictions=os.path.join(run.dir, p["predictions"]) if p.get("predictions") else None,
                           scores=scores, part=name, majority=scores.get("majority"), ranks=name == rank))
        return out


def load_results(layout: Layout) -> List[RunResult]:
    """The finished runs of the experiment's plan, in plan order (runs left from an earlier, larger grid are not counted)."""
    out = []
    for run in load_runs(layout.plan):
        # the plan's paths are where the experiment ran; a copied directory keeps the same relative layout
        run.dir = layout.named_run_dir(run.name)
        path = run_file(run.dir, METRICS)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            try:
                metrics = json.load(f)
            except json.JSONDecodeError as e:
                raise KAdapterError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
        out += RunResult.parts_of(run, metrics)
    return out


# ---------------------------------------------------------------------------------------------- units and rows


def units(results: List[RunResult], by_knowledge_seed: bool) -> List[Tuple[int, List[RunResult]]]:
    """``[(unit id, its runs)]`` sorted by id: knowledge seeds, or every downstream seed on its own."""
    groups: Dict[int, List[RunResult]] = {}
    for r in results:
        groups.setdefault(r.knowledge_seed if by_knowledge_seed else r.seed, []).append(r)
    # a probe's runs have no downstream seed (None): one run per unit
    return [(u, sorted(groups[u], key=lambda r: (r.seed is not None, r.seed or 0)))
            for u in sorted(groups, key=lambda u: (u is not None, u or 0))]


def unit_score(runs: List[RunResult]) -> float:
    return stats.mean([r.value for r in runs])


def task_parts(record: ExperimentRecord, task: str) -> List[Optional[str]]:
    """The names of a task's scores in the order the experiment lists them ([None]: its only one)."""
    t = record.tasks.get(task)
    return list(t.parts) if t is not None and t.parts else [None]


def relation_gold(record: ExperimentRecord, task: str, part: Optional[str]) -> Optional[str]:
    """The gold file of a score of a task scored by TACRED's scorer (None for other tasks, or a gold file that
    depends on the run's data directory): the file its type baseline is counted on."""
    t = record.tasks.get(task)
    if t is None or t.score_task != "tacred":
        return None
    return t.golds.get(str(part)) if part is not None else t.gold


def make_rows(record: ExperimentRecord, results: List[RunResult]) -> List[dict]:
    """One row per (task, score, variant, size): the units' scores, their mean and sample std (and for a probe
    the majority baseline, the mean over units of each unit's; for a task scored by TACRED's scorer the type
    baseline of its gold file, ``baselines.type_baseline``)."""
    groups: Dict[Tuple, List[RunResult]] = {}
    for r in results:
        groups.setdefault((r.task, r.part, r.variant, r.size), []).append(r)
    tasks = list(record.tasks)
    variants = [v.name for v in record.variants]

    def order(key):
        task, part, variant, size = key
        parts = task_parts(record, task)
        return (tasks.index(task) if task in tasks else len(tasks), task, parts.index(part) if part in parts else len(parts),
                str(part), variants.index(variant) if variant in variants else len(variants), variant, size.sort_key())

    by_kseed = record.several_knowledge_seeds
    rows = []
    type_baselines: Dict[str, Optional[float]] = {}
    for key in sorted(groups, key=order):
        task, part, variant, size = key
        group = units(groups[key], by_kseed)
        values = [unit_score(runs) for _, runs in group]
        row = {"task": task, "variant": variant, "fraction": size.fraction, "size": size.as_dict(),
               "train_phase": group[0][1][0].phase, "metric": group[0][1][0].metric,
               "mean": stats.mean(values), "std": stats.sample_std(values), "n": len(values)}
        if part is not None:
            row = {"task": task, "part": part, **{k: v for k, v in row.items() if k != "task"}}
        chances = [r.majority for _, runs in group for r in runs if r.majority is not None]
        if chances:
            row["majority"] = stats.mean(chances)
        gold = relation_gold(record, task, part)
        if gold is not None:
            if gold not in type_baselines:
                type_baselines[gold] = type_baseline(gold) if os.path.isfile(gold) else None
            if type_baselines[gold] is not None:
                row["type_baseline"] = type_baselines[gold]
        seeds = [r.seed for _, runs in group for r in runs if r.seed is not None]
        if by_kseed:
            row.update(seeds=sorted(seeds), values=values, knowledge_seeds=[u for u, _ in group],
                       units=[{"knowledge_seed": u, "seeds": [r.seed for r in runs if r.seed is not None],
                               "values": [r.value for r in runs]} for u, runs in group])
        else:
            row.update(seeds=[u for u, _ in group if u is not None], values=values)
        rows.append(row)
    return rows


def _row_key(task: str, variant: str, size: Optional[dict], part: Optional[str] = None) -> Tuple[str, str, str, str]:
    return task, str(part), variant, json.dumps(size, sort_keys=True)


def make_comparisons(record: ExperimentRecord, rows: List[dict]) -> List[dict]:
    """Each compared variant's row against each of its controls' rows (same task, size and phase)."""
    by = {_row_key(r["task"], r["variant"], r["size"], r.get("part")): r for r in rows}
    out = []
    for r in rows:
        for control in record.controls.get(r["variant"], []):
            other = by.get(_row_key(r["task"], control, r["size"], r.get("part")))
            if other is None:
                continue
            c = stats.compare(r["values"], other["values"])
            comparison = {"task": r["task"], "size": r["size"], "variant": r["variant"], "baseline": control,
                          "metric": r["metric"], "diff": c["diff"], "p": c["p"], "exceeds_noise": c["exceeds_noise"]}
            if "part" in r:
                comparison = {"task": r["task"], "part": r["part"], **{k: v for k, v in comparison.items() if k != "task"}}
            out.append(comparison)
    return out


def verdict(c: dict) -> str:
    if c["exceeds_noise"] is None:
        return "no verdict (fewer than 2 units)"
    if not c["exceeds_noise"]:
        return "within seed noise"
    return "better, beyond seed noise" if c["diff"] > 0 else "worse, beyond seed noise"


def where(c: dict) -> str:
    """A row's or comparison's task, score and size in words: ``probe_train: adapter (10 per label)``."""
    return (c["task"] + (f": {c['part']}" if c.get("part") is not None else "")
            + ("" if c["size"] is None else f" ({TrainSize.from_dict(c['size']).text()})"))


def statements(record: ExperimentRecord, comparisons: List[dict]) -> List[str]:
    """One plain sentence per compared variant, task and size: does it beat its first control beyond seed noise?"""
    lines = []
    for c in comparisons:
        if c["baseline"] != record.controls[c["variant"]][0]:
            continue
        p = "" if c["p"] is None else f", p = {c['p']:.3f}"
        beats = "yes" if c["exceeds_noise"] and c["diff"] > 0 else ("cannot tell" if c["exceeds_noise"] is None else "no")
        lines.append(f"{c['variant']} beats {c['baseline']} beyond seed noise on {where(c)}: {beats} "
                     f"({c['diff']:+.4f} {c['metric']}{p})")
    return lines


def describe_controls(record: ExperimentRecord, comparisons: List[dict]) -> str:
    """What each control used in the comparisons is, from its definition."""
    parts = []
    for control in dict.fromkeys(c["baseline"] for c in comparisons):
        v = record.variant(control)
        if v is None:
            continue
        compared = [record.variant(c["variant"]) for c in comparisons if c["baseline"] == control]
        slots = set(v.adapters)
        if v.base:
            parts.append(f"`{control}` is trained downstream from the `{v.base}` base")
        elif not v.adapters:
            parts.append(f"`{control}` has no adapters")
        elif all(k == "random" for k in v.adapters.values()):
            same = all(set(o.adapters) <= slots for o in compared if o is not None)
            head = "the same adapters and fusion as the adapter rows" if same else f"adapters in {', '.join(sorted(slots))}"
            parts.append(f"`{control}` has {head}, randomly initialised and never knowledge-trained")
        else:
            parts.append(f"`{control}` has the adapters " + ", ".join(f"{s}: {k}" for s, k in v.adapters.items()))
    return "; ".join(parts) + "." if parts else ""


def fmt(mean: float, std: Optional[float]) -> str:
    return f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"


def describe_score(record: ExperimentRecord, task: str, metric: str) -> str:
    """What a task's numbers are, for the line above the table."""
    t = record.tasks.get(task)
    if t is not None and t.probe is not None:
        dirs = f" of each directory ({', '.join(t.parts)}; {t.rank} ranks)" if t.parts else ""
        return f"{task}: {metric} of the LAMA probe (`kadapter-probe lama`, macro over relations, {t.probe['fusion']} readout){dirs}"
    split = t.split if t is not None else "test"
    if t is not None and t.parts:
        return f"{task}: {metric} on the {split} split of each gold file ({', '.join(t.parts)}; {t.rank} ranks)"
    return f"{task}: {metric} on the {split} split"


def markdown(record: ExperimentRecord, rows: List[dict], comparisons: List[dict], control: Optional[dict] = None,
             tested: Optional[List[dict]] = None) -> str:
    """The report: the positive control first (when the experiment has one), the arms' table, the differences to the
    controls, the hypotheses."""
    def column(r):
        return r["task"], str(r.get("part")), json.dumps(r["size"], sort_keys=True)

    columns = list(dict.fromkeys(column(r) for r in rows))
    by = {(*column(r), r["variant"]): r for r in rows}
    first = {column(r): r for r in reversed(rows)}
    variants = [v.name for v in record.variants]
    best = {}
    for col in columns:
        cands = [by[(*col, v)] for v in variants if (*col, v) in by]
        if cands:
            best[col] = max(c["mean"] for c in cands)
    lines = [f"# Experiment `{record.name}`", ""]
    if control is not None:
        units_word = "knowledge seeds" if record.several_knowledge_seeds else "seeds"
        lines += [positive_control.markdown(control, units_word),
                  "## Arms" + ("" if control["holds"] else " (uncalibrated: the positive control did not hold)"), ""]
    tasks = list(record.tasks)
    metrics = sorted({(r["task"], r["metric"]) for r in rows}, key=lambda t: tasks.index(t[0]) if t[0] in tasks else 0)
    unit = ("over knowledge seeds (each the mean of its downstream seeds); n = knowledge seeds finished"
            if record.several_knowledge_seeds else "over seeds; n = seeds finished")
    probes = any(t.probe is not None for t in record.tasks.values())
    if probes:
        unit += " (a probe runs once per knowledge seed: its n counts knowledge seeds)"
    lines.append("Scores: " + "; ".join(describe_score(record, t, m) for t, m in metrics)
                 + f". Mean ± sample standard deviation {unit}; the best mean per column in bold.")
    if probes:
        lines += ["", "Chance beside each probe score: the majority baseline, per relation the rate of its most frequent "
                      "object among the facts probed, averaged over relations as P@1 is."]
    if any(r.get("type_baseline") is not None for r in rows):
        lines += ["", "Beside each relation-classification score: its type baseline, the micro-F1 of answering every test "
                      "example with the relation most frequent among the gold file's examples of its entity types (what "
                      "the types alone give); answering no_relation everywhere (the majority label) scores 0, since "
                      "TACRED's micro-F1 leaves no_relation out."]
    lines.append("")
    header = ["variant"] + [where({**first[c], "part": first[c].get("part")}) for c in columns]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for v in variants:
        cells = [v]
        for col in columns:
            r = by.get((*col, v))
            if r is None:
                cells.append("–")
                continue
            text = fmt(r["mean"], r["std"]) + f" (n={r['n']})"
            text = f"**{text}**" if r["mean"] == best[col] else text
            text += f"; chance {r['majority']:.4f}" if r.get("majority") is not None else ""
            cells.append(text + (f"; types alone {r['type_baseline']:.4f}" if r.get("type_baseline") is not None else ""))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if comparisons:
        lines += ["## Differences to the controls", "",
                  f"Seed-noise rule: {stats.rule(record.several_knowledge_seeds)}. {describe_controls(record, comparisons)}", "",
                  "| task | variant | vs | difference | p | verdict |", "|---|---|---|---|---|---|"]
        for c in comparisons:
            p = "–" if c["p"] is None else f"{c['p']:.3f}"
            lines.append(f"| {where(c)} | {c['variant']} | {c['baseline']} | {c['diff']:+.4f} | {p} | {verdict(c)} |")
        lines.append("")
        said = statements(record, comparisons)
        if said:
            lines += [f"- {s}" for s in said] + [""]
    if tested:
        lines.append(row_hypotheses.markdown(tested))
    return "\n".join(lines)


def plot(path: str, record: ExperimentRecord, rows: List[dict]) -> Optional[str]:
    """Bars with error bars per task (one size), or lines over training sizes with ±std bands."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no results.png"
    import logging

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    panels = list(dict.fromkeys((r["task"], r.get("part")) for r in rows))  # a panel per task and score
    if not panels:
        return "no finished runs: no results.png"
    names = [v.name for v in record.variants]
    fig, axes = plt.subplots(1, len(panels), figsize=(max(5.0, 1.0 + 0.9 * len(names)) * len(panels), 4.4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    spread = "knowledge seeds" if record.several_knowledge_seeds else "seeds"
    for ax, (task, part) in zip(axes[0], panels):
        task_rows = [r for r in rows if r["task"] == task and r.get("part") == part]
        task = where({"task": task, "part": part, "size": None})
        sizes = sorted({TrainSize.from_dict(r["size"]) for r in task_rows}, key=TrainSize.sort_key)
        variants = [v for v in names if any(r["variant"] == v for r in task_rows)]
        metric = task_rows[0]["metric"]
        if len(sizes) == 1:
            means = [next(r for r in task_rows if r["variant"] == v)["mean"] for v in variants]
            errs = [next(r for r in task_rows if r["variant"] == v)["std"] or 0.0 for v in variants]
            ax.bar(range(len(variants)), means, yerr=errs, capsize=4,
                   color=[colors[i % len(colors)] for i in range(len(variants))])
            chance = [positive_control.chance_of(next(r for r in task_rows if r["variant"] == v)) for v in variants]
            if any(c is not None for c in chance):  # chance beside every probe score (and type baseline)
                kind = next(c[1] for c in chance if c is not None)
                ax.scatter(range(len(variants)), [c[0] if c is not None else float("nan") for c in chance], marker="_",
                           s=400, color="black", zorder=3, label=f"chance ({kind})")
                ax.legend(fontsize=8)
            ax.set_xticks(range(len(variants)))
            ax.set_xticklabels(variants, rotation=30, ha="right")
            title = task if sizes[0].is_full else f"{task} ({sizes[0].text()})"
        else:
            xs = plot_positions(sizes)
            for i, v in enumerate(variants):
                pts = [(x, r) for x, s in zip(xs, sizes) for r in task_rows
                       if r["variant"] == v and TrainSize.from_dict(r["size"]) == s]
                x = [p[0] for p in pts]
                m = [p[1]["mean"] for p in pts]
                sd = [p[1]["std"] or 0.0 for p in pts]
                color = colors[i % len(colors)]
                ax.plot(x, m, marker="o", label=v, color=color)
                ax.fill_between(x, [a - b for a, b in zip(m, sd)], [a + b for a, b in zip(m, sd)], color=color, alpha=0.15)
            ax.set_xscale("log")
            ax.set_xticks(xs)
            ax.set_xticklabels([s.text() for s in sizes], rotation=30, ha="right")
            ax.minorticks_off()
            ax.legend(fontsize=8)
            title = f"{task}: {metric} against training size (band: ±1 std over {spread})"
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"{record.name}: mean over {spread}; error bars and bands: ±1 sample std", fontsize=10)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png", metadata={"Software": None})
    plt.close(fig)
    return None


def write_reports(out_dir: str) -> dict:
    """Write results.json, results.md and results.png from ``out_dir``; returns results.json's content."""
    from ..provenance import collect

    layout = Layout(out_dir)
    if not os.path.isfile(layout.experiment) or not os.path.isfile(layout.plan):
        raise KAdapterError(f"{out_dir} holds no experiment.json and plan.json: not an experiment directory")
    record = load_record(layout.experiment)
    results = load_results(layout)
    if not results:
        raise KAdapterError(f"{out_dir}: no finished run (no runs/**/metrics.json)")
    rows = make_rows(record, results)
    comparisons = make_comparisons(record, rows)
    control = positive_control.check(record, rows)
    tested = row_hypotheses.evaluate(record, rows)
    out = {"experiment": record.name}
    if control is not None:  # first: an instrument shows its positive control before any arm's figure
        out["positive_control"] = control
    out.update(rows=rows, comparisons=comparisons, seed_noise_rule=stats.rule(record.several_knowledge_seeds),
               statements=statements(record, comparisons))
    if tested:
        out["hypotheses"] = tested
    md = markdown(record, rows, comparisons, control, tested)
    if record.study is not None:
        from .study import study_section

        # the study reads each run's ranking score (the gold file it names) and its predictions
        study_md, study_json = study_section(layout, record, [r for r in results if r.ranks])
        md = md.rstrip("\n") + "\n\n" + study_md.strip("\n") + "\n"
        out["study"] = study_json
    out["provenance"] = collect(record.dtype, record.threads)
    if record.threads is None:  # torch's default in each run (their metrics.json say), not this process's
        out["provenance"]["threads"] = None
    atomic.write_text(layout.result(RESULTS_JSON), json.dumps(out, indent=2) + "\n")
    atomic.write_text(layout.result(RESULTS_MD), md)
    problem = plot(layout.result(RESULTS_PNG), record, rows)
    if problem is not None:
        print(f"kadapter-experiment: {problem}")
    return out
