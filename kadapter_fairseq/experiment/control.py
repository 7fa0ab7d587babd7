"""The positive control: what an instrument must show before any arm's figure is read.

An experiment's ``positive_control:`` section (validated with the rest of the config before anything
trains: ``config._positive_control``) names a variant whose scores are known in advance to be
readable, and pre-registered criteria on them::

    positive_control:
      variant: roberta
      claim: the base alone recalls the facts its text stated, and no others
      criteria:
        - {task: probe_train, parts: base, min_over_chance: 0.2}             # well above chance
        - {task: probe_train, parts: [adapter, none], max_over_chance: 0.05}  # not above it

A criterion's *margin* is the row's mean (over units) minus the row's chance level: the majority
baseline of a probe score, the type baseline of a relation task (``baselines.py``). The control
holds when every criterion holds. The report prints it first (results.md, results.json, the printed
summary); when it fails or cannot be checked, the arms' table follows headed as uncalibrated.
"""
from typing import List, Optional, Tuple

from .plan import ExperimentRecord


def chance_of(row: dict) -> Optional[Tuple[float, str]]:
    """``(level, what it is)`` of a report row, or None when the row has no chance level."""
    if row.get("majority") is not None:
        return row["majority"], "majority baseline"
    if row.get("type_baseline") is not None:
        return row["type_baseline"], "type baseline"
    return None


def bound_text(c: dict) -> str:
    low, high = c.get("min_over_chance"), c.get("max_over_chance")
    if low is not None and high is not None:
        return f"{low:+.2f} to {high:+.2f}"
    return f"≥ {low:+.2f}" if low is not None else f"≤ {high:+.2f}"


def where(task: str, part: Optional[str]) -> str:
    return task + (f": {part}" if part is not None else "")


def check(record: ExperimentRecord, rows: List[dict]) -> Optional[dict]:
    """Each criterion against the control variant's rows, and the verdict (None: no positive control)."""
    pc = record.positive_control
    if pc is None:
        return None
    results = []
    for crit in pc.criteria:
        matching = [r for r in rows if r["task"] == crit["task"] and r.get("part") == crit["part"]
                    and r["variant"] == pc.variant]
        base = {"task": crit["task"], "part": crit["part"], "min_over_chance": crit["min_over_chance"],
                "max_over_chance": crit["max_over_chance"]}
        if not matching:
            results.append({**base, "size": None, "holds": None})
            continue
        for row in matching:  # one per training size (a probe has one)
            chance = chance_of(row)
            out = {**base, "size": row["size"], "mean": row["mean"], "std": row["std"], "n": row["n"], "values": row["values"]}
            if chance is None:
                results.append({**out, "holds": None})
                continue
            margin = row["mean"] - chance[0]
            holds = ((crit["min_over_chance"] is None or margin >= crit["min_over_chance"])
                     and (crit["max_over_chance"] is None or margin <= crit["max_over_chance"]))
            results.append({**out, "chance": chance[0], "chance_kind": chance[1], "margin": margin, "holds": holds})
    failed = [r for r in results if r["holds"] is False]
    unchecked = [r for r in results if r["holds"] is None]
    holds = not failed and not unchecked
    if holds:
        verdict = f"The positive control holds (all {len(results)} criteria): the arms' figures below are read against a calibrated instrument."
    elif failed:
        verdict = (f"The positive control FAILS ({len(failed)} of {len(results)} criteria: "
                   + ", ".join(where(r["task"], r["part"]) for r in failed) + "): the arms' figures below are uncalibrated.")
    else:
        verdict = (f"The positive control could not be checked ({len(unchecked)} of {len(results)} criteria without a "
                   "finished run or a chance level): the arms' figures below are uncalibrated.")
    return {"variant": pc.variant, "claim": pc.claim, "criteria": results, "holds": holds, "verdict": verdict}


def markdown(control: dict, units: str) -> str:
    variant = control["variant"]
    lines = ["## Positive control (read before any arm)", ""]
    if control["claim"]:
        lines.append(f"Claim: {control['claim']}.")
    lines += [f"Pre-registered criteria on `{variant}`'s mean over {units}; margin = score − chance (a probe's majority "
              "baseline, a relation task's type baseline).", "",
              f"| score | {variant} | chance | margin | criterion | holds |", "|---|---|---|---|---|---|"]
    for c in control["criteria"]:
        if c.get("mean") is None:
            lines.append(f"| {where(c['task'], c['part'])} | – | – | – | {bound_text(c)} | not checked (no finished run) |")
            continue
        score = f"{c['mean']:.4f}" + (f" ± {c['std']:.4f}" if c["std"] is not None else "") + f" (n={c['n']})"
        if c.get("chance") is None:
            lines.append(f"| {where(c['task'], c['part'])} | {score} | – | – | {bound_text(c)} | not checked (no chance level) |")
            continue
        lines.append(f"| {where(c['task'], c['part'])} | {score} | {c['chance']:.4f} ({c['chance_kind']}) | "
                     f"{c['margin']:+.4f} | {bound_text(c)} | {'yes' if c['holds'] else '**no**'} |")
    lines += ["", f"**{control['verdict']}**", ""]
    return "\n".join(lines)


def summary(control: dict) -> List[str]:
    """The control's figures and verdict as the command prints them, before any arm's table."""
    lines = [f"positive control ({control['variant']}): " + ("holds" if control["holds"] else "FAILS or unchecked")]
    for c in control["criteria"]:
        if c.get("margin") is None:
            lines.append(f"  {where(c['task'], c['part'])}: not checked")
            continue
        lines.append(f"  {where(c['task'], c['part'])}: {c['mean']:.4f} vs chance {c['chance']:.4f}, margin "
                     f"{c['margin']:+.4f} (criterion {bound_text(c)}): {'yes' if c['holds'] else 'NO'}")
    return lines + [control["verdict"]]
