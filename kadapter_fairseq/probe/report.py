"""results.md for a LAMA probe: the per-relation table, and with ``--compare`` the side-by-side
table and the paper's Table 6 view (top-k generations where base and adapters disagree)."""
from typing import List, Optional


def pct(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _skips(skipped: dict) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(skipped.items())) or "0"


def relation_table(results: dict) -> List[str]:
    uhn = results["uhn"]
    head = "| relation | label | n | P@1 | chance | P@10 | MRR | skipped |" + (" UHN removed |" if uhn else "")
    lines = [head, "|" + "---|" * (8 + uhn)]
    for name, m in results["relations"].items():
        row = (f"| {name} | {m.get('label', '')} | {m['n']} | {pct(m['p@1'])} | {pct(m.get('majority'))} | {pct(m['p@10'])} | "
               f"{pct(m['mrr'])} | {_skips(m['skipped'])} |")
        if uhn:
            row += f" {_skips(m.get('uhn_removed', {}))} |"
        lines.append(row)
    row = (f"| **macro ({results['n_relations']} relations)** | | {results['n_facts']} | **{pct(results['macro_p@1'])}** | "
           f"{pct(results.get('macro_majority'))} | {pct(results['macro_p@10'])} | {pct(results['macro_mrr'])} | "
           f"{_skips(results['skipped'])} |")
    if uhn:
        row += f" {_skips(results['uhn_removed'])} |"
    lines.append(row)
    return lines


def compare_table(results: dict) -> List[str]:
    base = results["without_adapters"]
    lines = ["| relation | n | chance | P@1 base | P@1 base + adapters | Δ |", "|---|---|---|---|---|---|"]
    for name, m in results["relations"].items():
        b = base["relations"][name]["p@1"]
        delta = "–" if m["p@1"] is None else f"{100 * (m['p@1'] - b):+.1f}"
        lines.append(f"| {name} | {m['n']} | {pct(m.get('majority'))} | {pct(b)} | {pct(m['p@1'])} | {delta} |")
    d = None if results["macro_p@1"] is None else results["macro_p@1"] - base["macro_p@1"]
    lines.append(f"| **macro** | {results['n_facts']} | {pct(results.get('macro_majority'))} | **{pct(base['macro_p@1'])}** | "
                 f"**{pct(results['macro_p@1'])}** | {'–' if d is None else f'{100 * d:+.1f}'} |")
    return lines


def disagreements(predictions: List[dict]) -> List[dict]:
    """Facts whose top-1 differs with and without adapters: those where only one side is right first."""
    out = [p for p in predictions if p["topk"][:1] != p["without_adapters"]["topk"][:1]]
    return sorted(out, key=lambda p: (p["correct"] == p["without_adapters"]["correct"], not p["correct"], p["relation"]))


def table6(predictions: List[dict], rows: int, k: int) -> List[str]:
    found = disagreements(predictions)
    lines = [f"{len(found)} of {len(predictions)} probed facts get a different top-1 prediction with the adapters"
             + (f"; the first {min(rows, len(found))} (facts where only one side is right come first):" if found else "."), ""]
    if not found or rows <= 0:
        return lines
    lines += ["| relation | query | gold | base: top-k | base + adapters: top-k |", "|---|---|---|---|---|"]
    for p in found[:rows]:
        def gen(side):
            return ", ".join(f"**{w}**" if w == p["obj_label"] else w for w in side["topk"][:k])
        query = p["query"].replace("|", "\\|")
        lines.append(f"| {p['relation']} | {query} | {p['obj_label']} | {gen(p['without_adapters'])} | {gen(p)} |")
    return lines


def markdown(results: dict, predictions: List[dict], table6_rows: int = 20) -> str:
    m = results["model"]
    adapters = ", ".join(f"{n}={p}" for n, p in m["adapters"].items()) or "none"
    lines = [
        f"# LAMA probe: {results['corpus']}{' (LAMA-UHN)' if results['uhn'] else ''}",
        "",
        f"- base: `{m['roberta_dir']}`; adapters: {adapters}" + (f"; fusion: {m['fusion']}" if m["adapters"] else ""),
        f"- queries: {results['queries']}; candidates: {results['candidates']['size']} words ({results['candidates']['vocabulary']})",
        f"- probed facts: {results['n_facts']}; skipped: {sum(results['skipped'].values())}"
        + (f"; removed by LAMA-UHN: {sum(results['uhn_removed'].values())}" if results["uhn"] else ""),
        "- P@1, P@10, MRR in %; macro = mean over relations with probed facts (as LAMA and the paper report P@1); "
        "chance = the majority baseline, the rate of the relation's most frequent object among the facts probed",
        "",
        "## Per relation" + (" (base + adapters)" if m["adapters"] else ""),
        "",
        *relation_table(results),
    ]
    if "without_adapters" in results:
        k = min(results["top_k"], 10)
        lines += ["", "## With and without the adapters (P@1)", "", *compare_table(results),
                  "", "## Generations where the two disagree (the paper's Table 6 view)", "",
                  *table6(predictions, table6_rows, k)]
    return "\n".join(lines) + "\n"
