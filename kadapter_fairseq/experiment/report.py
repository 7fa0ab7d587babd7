"""``kadapter-experiment report DIR``: results.json, results.md and results.png from the run directories.

Everything here is computed from ``DIR/experiment.json`` and the runs' ``metrics.json`` files
only, so a report rebuilt later, or after an interrupted experiment was finished, is the same
file as one written straight after an uninterrupted run.
"""
import glob
import json
import os
from typing import Dict, List, Optional, Tuple

from ..errors import KAdapterError
from . import stats

CONTROLS = ("no-knowledge", "roberta")


def load_runs(out_dir: str) -> List[dict]:
    """The finished runs of the experiment's last plan (runs left from an earlier, larger grid are not counted)."""
    paths = sorted(glob.glob(os.path.join(out_dir, "runs", "**", "metrics.json"), recursive=True))
    plan = os.path.join(out_dir, "plan.json")
    if os.path.isfile(plan):
        with open(plan, encoding="utf-8") as f:
            planned = {r["rel"] for r in json.load(f)["runs"]}
        paths = [p for p in paths if os.path.relpath(os.path.dirname(p), out_dir) in planned]
    runs = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            try:
                runs.append(json.load(f))
            except json.JSONDecodeError as e:
                raise KAdapterError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    return runs


def _size_key(size: Optional[dict]):
    """Per-label counts, then example counts, then fractions, then the full set (None)."""
    if size is None:
        return (3, 0.0)
    kind, value = next(iter(size.items()))
    return ({"max_examples_per_label": 0, "max_examples": 1, "fraction": 2}[kind], float(value))


def size_text(size: Optional[dict]) -> str:
    if size is None:
        return "full"
    kind, value = next(iter(size.items()))
    return {"fraction": f"{value:g} of train", "max_examples": f"{value} examples",
            "max_examples_per_label": f"{value} per label"}[kind]


def make_rows(experiment: dict, runs: List[dict]) -> List[dict]:
    """One row per (task, variant, size): the per-seed values, mean and sample std."""
    groups: Dict[Tuple, List[dict]] = {}
    for r in runs:
        key = (r["task"], r["variant"], json.dumps(r.get("size"), sort_keys=True))
        groups.setdefault(key, []).append(r)
    task_order = list(experiment["tasks"])
    variant_order = list(experiment["variants"])

    def order(key):
        task, variant, size = key
        return (task_order.index(task) if task in task_order else len(task_order), task,
                variant_order.index(variant) if variant in variant_order else len(variant_order), variant,
                _size_key(json.loads(size)))

    rows = []
    for key in sorted(groups, key=order):
        group = sorted(groups[key], key=lambda r: r["seed"])
        values = [float(r["value"]) for r in group]
        first = group[0]
        std = stats.sample_std(values)
        rows.append({
            "task": first["task"], "variant": first["variant"], "fraction": first.get("fraction"),
            "size": first.get("size"), "train_phase": first.get("train_phase"), "metric": first["metric"],
            "mean": stats.mean(values), "std": std, "n": len(values), "seeds": [r["seed"] for r in group],
            "values": values,
        })
    return rows


def adapter_variants(experiment: dict) -> List[str]:
    """Variants with at least one knowledge-trained adapter (the rows a control is compared with)."""
    return [v for v in experiment["variants"]
            if any(k != "random" for k in experiment.get("adapters", {}).get(v, {}).values())]


def make_comparisons(experiment: dict, rows: List[dict]) -> List[dict]:
    by = {(r["task"], r["variant"], json.dumps(r["size"], sort_keys=True)): r for r in rows}
    out = []
    for r in rows:
        if r["variant"] not in adapter_variants(experiment):
            continue
        for control in CONTROLS:
            other = by.get((r["task"], control, json.dumps(r["size"], sort_keys=True)))
            if other is None:
                continue
            c = stats.compare(r["values"], other["values"])
            out.append({"task": r["task"], "size": r["size"], "variant": r["variant"], "baseline": control,
                        "metric": r["metric"], "diff": c["diff"], "p": c["p"], "exceeds_noise": c["exceeds_noise"]})
    return out


def verdict(c: dict) -> str:
    if c["exceeds_noise"] is None:
        return "no verdict (fewer than 2 seeds)"
    if not c["exceeds_noise"]:
        return "within seed noise"
    return "better, beyond seed noise" if c["diff"] > 0 else "worse, beyond seed noise"


def statements(comparisons: List[dict], baseline: str = "no-knowledge") -> List[str]:
    """One plain sentence per adapter variant and task: does it beat ``baseline`` beyond seed noise?"""
    lines = []
    for c in comparisons:
        if c["baseline"] != baseline:
            continue
        where = c["task"] + ("" if c["size"] is None else f" ({size_text(c['size'])})")
        p = "" if c["p"] is None else f", p = {c['p']:.3f}"
        beats = "yes" if c["exceeds_noise"] and c["diff"] > 0 else ("cannot tell" if c["exceeds_noise"] is None else "no")
        lines.append(f"{c['variant']} beats {baseline} beyond seed noise on {where}: {beats} "
                     f"({c['diff']:+.4f} {c['metric']}{p})")
    return lines


def fmt(mean: float, std: Optional[float]) -> str:
    return f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"


def markdown(experiment: dict, rows: List[dict], comparisons: List[dict]) -> str:
    columns = []  # (task, size json)
    for r in rows:
        col = (r["task"], json.dumps(r["size"], sort_keys=True))
        if col not in columns:
            columns.append(col)
    by = {(r["task"], json.dumps(r["size"], sort_keys=True), r["variant"]): r for r in rows}
    best = {}
    for col in columns:
        cands = [by[(col[0], col[1], v)] for v in experiment["variants"] if (col[0], col[1], v) in by]
        if cands:
            best[col] = max(c["mean"] for c in cands)
    lines = [f"# Experiment `{experiment['name']}`", ""]
    metrics = sorted({(r["task"], r["metric"]) for r in rows}, key=lambda t: list(experiment["tasks"]).index(t[0])
                     if t[0] in experiment["tasks"] else 0)
    lines.append("Scores: " + "; ".join(f"{t}: {m} on the {experiment['tasks'].get(t, {}).get('split', 'test')} split"
                                        for t, m in metrics)
                 + f". Mean ± sample standard deviation over seeds; n = seeds finished; the best mean per column in bold.")
    lines.append("")
    header = ["variant"] + [c[0] + ("" if json.loads(c[1]) is None else f" ({size_text(json.loads(c[1]))})")
                            for c in columns]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for v in experiment["variants"]:
        cells = [v]
        for col in columns:
            r = by.get((col[0], col[1], v))
            if r is None:
                cells.append("–")
                continue
            text = fmt(r["mean"], r["std"]) + f" (n={r['n']})"
            cells.append(f"**{text}**" if r["mean"] == best[col] else text)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if comparisons:
        lines += ["## Differences to the controls", "",
                  f"Seed-noise rule: {stats.RULE}. `no-knowledge` has the same adapters and fusion as the adapter rows, "
                  "randomly initialised and never knowledge-trained; `roberta` has no adapters.", "",
                  "| task | variant | vs | difference | p | verdict |", "|---|---|---|---|---|---|"]
        for c in comparisons:
            where = c["task"] + ("" if c["size"] is None else f" ({size_text(c['size'])})")
            p = "–" if c["p"] is None else f"{c['p']:.3f}"
            lines.append(f"| {where} | {c['variant']} | {c['baseline']} | {c['diff']:+.4f} | {p} | {verdict(c)} |")
        lines.append("")
        said = statements(comparisons)
        if said:
            lines += [f"- {s}" for s in said] + [""]
    return "\n".join(lines)


def plot(path: str, experiment: dict, rows: List[dict]) -> Optional[str]:
    """Bars with error bars per task (one size), or lines over training sizes with ±std bands."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no results.png"
    import logging

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    tasks = [t for t in experiment["tasks"] if any(r["task"] == t for r in rows)]
    if not tasks:
        return "no finished runs: no results.png"
    fig, axes = plt.subplots(1, len(tasks), figsize=(max(5.0, 1.0 + 0.9 * len(experiment["variants"])) * len(tasks), 4.4),
                             squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, task in zip(axes[0], tasks):
        task_rows = [r for r in rows if r["task"] == task]
        sizes = sorted({json.dumps(r["size"], sort_keys=True) for r in task_rows}, key=lambda s: _size_key(json.loads(s)))
        variants = [v for v in experiment["variants"] if any(r["variant"] == v for r in task_rows)]
        metric = task_rows[0]["metric"]
        if len(sizes) == 1:
            means = [next(r for r in task_rows if r["variant"] == v)["mean"] for v in variants]
            errs = [next(r for r in task_rows if r["variant"] == v)["std"] or 0.0 for v in variants]
            ax.bar(range(len(variants)), means, yerr=errs, capsize=4,
                   color=[colors[i % len(colors)] for i in range(len(variants))])
            ax.set_xticks(range(len(variants)))
            ax.set_xticklabels(variants, rotation=30, ha="right")
            title = task if json.loads(sizes[0]) is None else f"{task} ({size_text(json.loads(sizes[0]))})"
        else:
            xs = _x_values([json.loads(s) for s in sizes])
            for i, v in enumerate(variants):
                pts = [(x, r) for x, s in zip(xs, sizes) for r in task_rows if r["variant"] == v
                       and json.dumps(r["size"], sort_keys=True) == s]
                x = [p[0] for p in pts]
                m = [p[1]["mean"] for p in pts]
                sd = [p[1]["std"] or 0.0 for p in pts]
                color = colors[i % len(colors)]
                ax.plot(x, m, marker="o", label=v, color=color)
                ax.fill_between(x, [a - b for a, b in zip(m, sd)], [a + b for a, b in zip(m, sd)], color=color, alpha=0.15)
            ax.set_xscale("log")
            ax.set_xticks(xs)
            ax.set_xticklabels([size_text(json.loads(s)) for s in sizes], rotation=30, ha="right")
            ax.minorticks_off()
            ax.legend(fontsize=8)
            title = f"{task}: {metric} against training size (band: ±1 std over seeds)"
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"{experiment['name']}: mean over seeds; error bars and bands: ±1 sample std", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png", metadata={"Software": None})
    plt.close(fig)
    return None


def _x_values(sizes: List[Optional[dict]]) -> List[float]:
    """Positions on a log axis: the counts or fractions themselves; the full set one step past the largest."""
    xs = [float(next(iter(s.values()))) if s is not None else None for s in sizes]
    known = [x for x in xs if x is not None]
    if not known:
        return [1.0] * len(xs)
    full = 1.0 if all(next(iter(s)) == "fraction" for s in sizes if s is not None) else max(known) * 2
    return [x if x is not None else full for x in xs]


def write_reports(out_dir: str) -> dict:
    """Write results.json, results.md and results.png from ``out_dir``; returns results.json's content."""
    path = os.path.join(out_dir, "experiment.json")
    if not os.path.isfile(path):
        raise KAdapterError(f"{out_dir} holds no experiment.json: not an experiment directory")
    with open(path, encoding="utf-8") as f:
        experiment = json.load(f)
    runs = load_runs(out_dir)
    if not runs:
        raise KAdapterError(f"{out_dir}: no finished run (no runs/**/metrics.json)")
    rows = make_rows(experiment, runs)
    comparisons = make_comparisons(experiment, rows)
    results = {"experiment": experiment["name"], "rows": rows, "comparisons": comparisons,
               "seed_noise_rule": stats.RULE, "statements": statements(comparisons)}
    md = markdown(experiment, rows, comparisons)
    study = (experiment.get("config") or {}).get("study")
    if study is not None:
        try:
            from .study import study_section
        except ModuleNotFoundError as e:
            if e.name != "kadapter_fairseq.experiment.study":
                raise
            raise KAdapterError("the experiment has a study: section, but kadapter_fairseq.experiment.study "
                                "(the study report) is not part of this installation") from None
        study_md, study_json = study_section(out_dir, experiment["config"], rows)
        md = md.rstrip("\n") + "\n\n" + study_md.strip("\n") + "\n"
        results["study"] = study_json
    _write_text(os.path.join(out_dir, "results.json"), json.dumps(results, indent=2) + "\n")
    _write_text(os.path.join(out_dir, "results.md"), md)
    problem = plot(os.path.join(out_dir, "results.png.tmp"), experiment, rows)
    if problem is None:
        os.replace(os.path.join(out_dir, "results.png.tmp"), os.path.join(out_dir, "results.png"))
    else:
        print(f"kadapter-experiment: {problem}")
    return results


def _write_text(path: str, text: str):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
