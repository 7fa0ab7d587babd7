"""``kadapter-probe lama``: zero-shot LAMA / LAMA-UHN probe of a base with or without adapters.

    kadapter-probe lama --roberta-dir BASE --adapters fac=fac.pt --data LAMA/data --corpus TREx \\
        --compare --out probe_trex

Writes ``predictions.jsonl`` (one line per probed fact), ``results.json`` and ``results.md``
to ``--out``. See docs/probing.md.
"""
import argparse
import json
import os
import sys
import time
from collections import Counter

from ..errors import ConfigError, KAdapterError
from . import lama, report, uhn


def parse_adapters(spec):
    out = {}
    for item in filter(None, (s.strip() for s in (spec or "").split(","))):
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(f"--adapters: expected name=path[,name=path...], got {item!r}")
        if name.strip() in out:
            raise ConfigError(f"--adapters names {name.strip()!r} twice")
        out[name.strip()] = path.strip()
    return out


def build_parser():
    p = argparse.ArgumentParser(prog="kadapter-probe", description="Zero-shot probes of a base and its adapters.")
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("lama", help="LAMA / LAMA-UHN factual probe (the paper's Tables 5 and 6)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("--roberta-dir", required=True, help="base directory: model.pt, dict.txt and its tokenizer files")
    q.add_argument("--adapters", default="", help="name=adapter.pt[,name=adapter.pt...]; none = the base alone")
    q.add_argument("--fusion", choices=["add", "concat"], default="add",
                   help="add (default): h_L + each adapter's own output; concat: the fusion saved in the adapter files")
    q.add_argument("--data", required=True, help="LAMA's data directory (relations.jsonl, TREx/, Google_RE/, ...)")
    q.add_argument("--corpus", required=True, choices=lama.CORPORA)
    mode = q.add_mutually_exclusive_group()
    mode.add_argument("--templates", dest="templates", action="store_true", default=None,
                      help="query with the relation templates (default for TREx and Google_RE)")
    mode.add_argument("--evidence", dest="templates", action="store_false",
                      help="query with the facts' own masked sentences (the only mode for ConceptNet and Squad)")
    q.add_argument("--uhn", action="store_true", help="LAMA-UHN: drop facts guessable from the entity name (both filters)")
    q.add_argument("--uhn-model", help="base directory judging the person-name filter (default: the probed base)")
    q.add_argument("--common-vocab", help="LAMA's common vocabulary file: rank only these words")
    q.add_argument("--top-k", type=int, default=10, help="generations kept per fact (default 10)")
    q.add_argument("--batch-size", type=int, default=64)
    q.add_argument("--compare", action="store_true", help="also probe without the adapters, side by side (one base pass)")
    q.add_argument("--table6-rows", type=int, default=20, help="disagreements shown in results.md with --compare")
    q.add_argument("--out", required=True, help="output directory")
    return p


def load_hub(base_dir, adapters, fusion):
    from ..hub import KAdapterHub

    hub = KAdapterHub.from_pretrained(base_dir, adapters=adapters, fusion=fusion, require_fusion=True)
    if hub.bpe is None:
        raise ConfigError(f"{base_dir}: no tokenizer files (encoder.json + vocab.bpe, or a sentencepiece model); the probe must encode text")
    return hub


def probe_lama(a) -> dict:
    if a.top_k < 1 or a.batch_size < 1:
        raise ConfigError("--top-k and --batch-size must be positive")
    templates = a.templates if a.templates is not None else a.corpus in ("TREx", "Google_RE")
    adapters = parse_adapters(a.adapters)
    if a.compare and not adapters:
        raise ConfigError("--compare needs --adapters: it compares the base with and without them")
    if a.uhn and a.corpus not in ("TREx", "Google_RE"):
        raise ConfigError("LAMA-UHN is defined for TREx and Google_RE only")
    times = {}
    t = time.perf_counter()
    corpus = lama.read_corpus(a.data, a.corpus, templates)
    common = lama.read_common_vocab(a.common_vocab) if a.common_vocab else None
    hub = load_hub(a.roberta_dir, adapters, a.fusion)
    vocab = lama.Vocabulary(hub.dictionary, hub.bpe, common)
    scorer = lama.MaskedLMScorer(hub, a.fusion)
    times["load"] = time.perf_counter() - t

    removed = {}
    if a.uhn:
        t = time.perf_counter()
        if a.uhn_model:
            judge_hub = load_hub(a.uhn_model, {}, "add")
            judge, judge_vocab = lama.MaskedLMScorer(judge_hub), lama.Vocabulary(judge_hub.dictionary, judge_hub.bpe)
        else:  # the probed base, without adapters, over its whole-word vocabulary
            judge, judge_vocab = scorer, (vocab if common is None else lama.Vocabulary(hub.dictionary, hub.bpe))
        corpus.facts, removed = uhn.apply_uhn(
            corpus.facts, lambda texts: lama.top_words(texts, judge, judge_vocab, uhn.NAME_TOP_K, a.batch_size))
        times["uhn"] = time.perf_counter() - t

    t = time.perf_counter()
    queries, skipped = lama.build_queries(corpus, vocab, templates, hub.model.max_positions())
    times["queries"] = time.perf_counter() - t
    main_side = "adapters" if adapters else "base"
    sides = ["base", "adapters"] if a.compare else [main_side]
    t = time.perf_counter()
    ranked = lama.run_queries(queries, scorer, vocab, a.top_k, a.batch_size, sides)
    times["forward"] = time.perf_counter() - t

    predictions = []
    ranks = {side: {r: [] for r in corpus.relations} for side in sides}
    for q in queries:
        f = q.fact
        record = {"id": f.id, "relation": f.relation, "sub_label": f.sub_label, "obj_label": f.obj_label, "query": q.text}
        topk, rank = ranked[id(q)][main_side]
        record.update(topk=topk, rank=rank, correct=rank == 1)
        if a.compare:
            b_topk, b_rank = ranked[id(q)]["base"]
            record["without_adapters"] = {"topk": b_topk, "rank": b_rank, "correct": b_rank == 1}
        predictions.append(record)
        for side in sides:
            ranks[side][f.relation].append(ranked[id(q)][side][1])

    def summary(side):
        rels = {r: lama.metrics(ranks[side][r]) for r in corpus.relations}
        return rels, {f"macro_{k}": lama.macro(rels, k) for k in ("p@1", "p@10", "mrr")}

    relations, macros = summary(main_side)
    for name, m in relations.items():
        m["label"] = corpus.relations[name].label
        m["skipped"] = dict(skipped[name])
        if a.uhn:
            m["uhn_removed"] = dict(removed.get(name, {}))
    total_skipped = sum((Counter(s) for s in skipped.values()), Counter())
    results = {
        "corpus": a.corpus,
        "uhn": bool(a.uhn),
        "queries": "templates" if templates else "evidence",
        "model": {"roberta_dir": a.roberta_dir, "adapters": adapters, "fusion": a.fusion},
        "candidates": {
            "vocabulary": f"common vocabulary {a.common_vocab}" if common else "the base's whole-word tokens",
            "size": len(vocab.words),
            **({"common_vocab_words_not_single_tokens": vocab.common_unusable} if common else {}),
        },
        "top_k": a.top_k,
        "relations": relations,
        **macros,
        "n_relations": sum(1 for m in relations.values() if m["n"]),
        "n_facts": len(predictions),
        "skipped": dict(total_skipped),
        "skip_reasons": {r: lama.SKIP_REASONS[r] for r in total_skipped},
        "files": corpus.files,
    }
    if a.uhn:
        results["uhn_removed"] = dict(sum((Counter(c) for c in removed.values()), Counter()))
        if not any(name in uhn.PERSON_RELATIONS for name in corpus.relations):
            results["uhn_note"] = "no person relation in this corpus: the person-name filter had nothing to judge"
    if a.compare:
        base_rel, base_macros = summary("base")
        results["without_adapters"] = {"relations": base_rel, **base_macros}
        results["disagreements"] = len(report.disagreements(predictions))
    results["seconds"] = {k: round(v, 2) for k, v in times.items()}

    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "predictions.jsonl"), "w", encoding="utf-8") as f:
        for record in predictions:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    with open(os.path.join(a.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, ensure_ascii=False)
    md = report.markdown(results, predictions, a.table6_rows)
    with open(os.path.join(a.out, "results.md"), "w", encoding="utf-8") as f:
        f.write(md)
    return results


def main(argv=None):
    a = build_parser().parse_args(argv)
    try:
        results = probe_lama(a)
    except KAdapterError as e:
        sys.exit(f"kadapter-probe: {e}")
    s = results["seconds"]
    line = f"macro P@1 {report.pct(results['macro_p@1'])}"
    if "without_adapters" in results:
        line = f"macro P@1 without adapters {report.pct(results['without_adapters']['macro_p@1'])}, with {report.pct(results['macro_p@1'])}"
    print(f"{results['corpus']}{' (UHN)' if results['uhn'] else ''}: {results['n_facts']} facts in "
          f"{results['n_relations']} relations, {sum(results['skipped'].values())} skipped"
          + (f", {sum(results['uhn_removed'].values())} removed by LAMA-UHN" if results["uhn"] else "") + f"; {line}")
    print(f"forward {s['forward']:.1f} s ({results['n_facts'] / max(s['forward'], 1e-9):.0f} facts/s), "
          f"total {sum(s.values()):.1f} s; wrote {os.path.join(a.out, 'results.md')}, results.json, predictions.jsonl")


if __name__ == "__main__":
    main()
