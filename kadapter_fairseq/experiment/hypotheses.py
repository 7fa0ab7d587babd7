"""Pre-registered comparisons of report rows, each one plain sentence.

An experiment's ``hypotheses:`` section (validated before anything trains: ``config._hypotheses``)
lists comparisons of one row of the report (a variant's score on a task, and one of the task's
parts) with another row, or with the row's own chance level::

    hypotheses:
      - id: H1
        claim: the adapter recalls the facts it was trained on better than the base alone
        score: {variant: fac-mlm, task: probe_train, part: adapter}
        versus: {variant: roberta}          # a key left out is the score's own (same task and part)
      - {id: H1b, score: {variant: fac-mlm, task: probe_train, part: adapter}, versus: {part: none}}
      - {id: H1c, score: {variant: fac-mlm, task: probe_train, part: adapter}, versus: chance}
      - {id: H4, score: {...}, versus: {...}, expect: any}    # a question without a predicted direction

The statistic is the runner's seed-noise rule (``stats``): Welch's two-sided test over the two
rows' unit scores (knowledge seeds, when the experiment has several; a deterministic row, such as
the base alone under the probe, is a constant, and Welch's test is then the one-sample test against
it), or the one-sample t-test against a fixed chance level; p < 0.05 is beyond the units' spread.
Rows of two parts of one variant are paired by unit, which Welch's test does not use: it is the
conservative choice. There is no correction for the number of comparisons.
"""
from typing import List, Optional

from . import stats
from .control import chance_of
from .plan import ExperimentRecord
from .sizes import TrainSize


def _rows(rows: List[dict], ref: dict) -> List[dict]:
    return [r for r in rows if r["task"] == ref["task"] and r.get("part") == ref["part"] and r["variant"] == ref["variant"]]


def describe(ref: dict, size: Optional[dict] = None) -> str:
    text = f"{ref['variant']} on {ref['task']}" + (f": {ref['part']}" if ref["part"] is not None else "")
    return text + ("" if size is None else f" ({TrainSize.from_dict(size).text()})")


def p_text(p: Optional[float]) -> str:
    return "–" if p is None else "< 0.001" if p < 0.001 else f"= {p:.3f}"


def figure(row: dict) -> str:
    return f"{row['mean']:.4f}" + (f" ± {row['std']:.4f}" if row["std"] is not None else "")


def verdict(test: dict, expect: str, spread: str) -> str:
    if test["exceeds_noise"] is None:
        return "no verdict (fewer than 2 units on a side)"
    if not test["exceeds_noise"]:
        return f"within the {spread}" + ("" if expect == "any" else ": not established")
    way = "higher" if test["diff"] > 0 else "lower"
    if expect == "any":
        return f"{way}, beyond the {spread}"
    return f"{way}, beyond the {spread}: " + ("as expected" if way == expect else "the opposite of the expectation")


def evaluate(record: ExperimentRecord, rows: List[dict]) -> List[dict]:
    """Each hypothesis's comparison (one per training size its rows share) with its sentence."""
    by_kseed = record.several_knowledge_seeds
    units = "knowledge seeds" if by_kseed else "seeds"
    spread = "knowledge-seed spread" if by_kseed else "seed spread"
    out = []
    for h in record.hypotheses:
        head = f"{h.id}" + (f" ({h.claim})" if h.claim else "") + (f", expected {h.expect}" if h.expect != "any" else "")
        scores = _rows(rows, h.score)
        if not scores:
            out.append({"id": h.id, "score": h.score, "versus": h.versus, "expect": h.expect, "test": None,
                        "statement": f"{head}: {describe(h.score)} has no finished run: not tested."})
            continue
        for row in scores:
            several = len(scores) > 1
            size = row["size"] if several else None
            item = {"id": h.id, "score": h.score, "versus": h.versus, "expect": h.expect, "size": row["size"]}
            if h.versus is None:
                chance = chance_of(row)
                if chance is None:
                    out.append({**item, "test": None, "statement": f"{head}: {describe(h.score, size)} has no chance level."})
                    continue
                test = stats.compare_to(row["values"], chance[0])
                against = f"chance ({chance[1]}) {chance[0]:.4f}"
                n = f"n = {row['n']} {units}"
                name = "one-sample t-test p"
                item.update(reference=chance[0], reference_kind=chance[1])
            else:
                others = _rows(rows, h.versus)
                # the same training size, or a row that has only one (a probe's)
                other = next((o for o in others if o["size"] == row["size"]), others[0] if len(others) == 1 else None)
                if other is None:
                    out.append({**item, "test": None,
                                "statement": f"{head}: {describe(h.versus, size)} has no finished run: not tested."})
                    continue
                test = stats.compare(row["values"], other["values"])
                against = f"{describe(h.versus)} {figure(other)}"
                n = f"n = {row['n']} and {other['n']} {units}"
                name = "Welch p"
            item.update(test=test, mean=row["mean"],
                        statement=f"{head}: {describe(h.score, size)} {figure(row)} vs {against} ({n}): "
                                  f"{test['diff']:+.4f}, {name} {p_text(test['p'])}: {verdict(test, h.expect, spread)}.")
            out.append(item)
    return out


def markdown(results: List[dict]) -> str:
    lines = ["## Hypotheses", "",
             "Each pre-registered comparison over units (Welch's two-sided test between rows; the one-sample t-test "
             f"against a chance level; p < {stats.ALPHA:g}: beyond the units' spread; no correction for the number of "
             "comparisons).", ""]
    lines += [f"- {r['statement']}" for r in results]
    return "\n".join(lines) + "\n"
