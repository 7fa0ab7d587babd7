"""The LAMA probe as a function: ``run_lama(...) -> results`` (what ``kadapter-probe lama`` runs).

``run_lama`` takes the command's options as keyword arguments and returns the dict the command
writes to ``results.json``; with ``out`` it also writes ``results.json``, ``results.md`` and
``predictions.jsonl`` there. ``lama_args`` gives the ``kadapter-probe lama`` arguments of the same
call, so a caller (the experiment runner) can echo, record or run the command that is equivalent
to its function call.

The results carry the **majority baseline** beside every P@1: per relation, the rate of its most
frequent object among the facts probed (after every skip, so it is chance for exactly the facts
scored), and its mean over the relations with probed facts (``macro_majority``, the chance level of
``macro_p@1``). A model that always answers a relation's most frequent object scores it.
"""
import json
import os
import time
from collections import Counter
from typing import Dict, List, Optional, Sequence

import torch

from .. import atomic, provenance
from ..errors import ConfigError
from . import lama, report
from . import uhn as uhn_filters

FUSIONS = ("delta", "concat")


def majority(objects: Sequence[str]) -> dict:
    """``{"majority", "majority_object"}``: the most frequent object's rate (ties: the object probed first)."""
    if not objects:
        return {"majority": None, "majority_object": None}
    obj, count = Counter(o.strip() for o in objects).most_common(1)[0]
    return {"majority": count / len(objects), "majority_object": obj}


def load_hub(base_dir, adapters, fusion, precision="fp32"):
    from ..hub import KAdapterHub

    hub = KAdapterHub.from_pretrained(base_dir, adapters=adapters, fusion=fusion, require_fusion=True, precision=precision)
    if hub.bpe is None:
        raise ConfigError(f"{base_dir}: no tokenizer files (encoder.json + vocab.bpe, or a sentencepiece model); the probe must encode text")
    return hub


def lama_args(roberta_dir: str, data: str, corpus: str, out: str, adapters: Optional[Dict[str, str]] = None,
              fusion: str = "delta", precision: str = "fp32", templates: Optional[bool] = None, uhn: bool = False,
              uhn_model: Optional[str] = None, common_vocab: Optional[str] = None, top_k: int = 10,
              batch_size: int = 64, compare: bool = False) -> List[str]:
    """The ``kadapter-probe lama`` arguments equivalent to ``run_lama`` with the same options (defaults left out)."""
    args = ["lama", "--roberta-dir", roberta_dir]
    if adapters:
        args += ["--adapters", ",".join(f"{name}={path}" for name, path in adapters.items())]
    if adapters and fusion != "delta":
        args += ["--fusion", fusion]
    if precision != "fp32":
        args += ["--precision", precision]
    args += ["--data", data, "--corpus", corpus]
    if templates is not None:
        args.append("--templates" if templates else "--evidence")
    if uhn:
        args.append("--uhn")
    if uhn_model:
        args += ["--uhn-model", uhn_model]
    if common_vocab:
        args += ["--common-vocab", common_vocab]
    if top_k != 10:
        args += ["--top-k", str(top_k)]
    if batch_size != 64:
        args += ["--batch-size", str(batch_size)]
    if compare:
        args.append("--compare")
    return args + ["--out", out]


def run_lama(roberta_dir: str, data: str, corpus: str, adapters: Optional[Dict[str, str]] = None, fusion: str = "delta",
             precision: str = "fp32", templates: Optional[bool] = None, uhn: bool = False, uhn_model: Optional[str] = None,
             common_vocab: Optional[str] = None, top_k: int = 10, batch_size: int = 64, compare: bool = False,
             out: Optional[str] = None, table6_rows: int = 20) -> dict:
    """Probe ``roberta_dir`` (with ``adapters``: name -> adapter file, read through ``fusion``) on LAMA's
    ``corpus`` in ``data``; returns the results (``results.json``'s content, the files written to
    ``out`` when given). Options as ``kadapter-probe lama``'s (docs/probing.md)."""
    if fusion not in FUSIONS:
        raise ConfigError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    if top_k < 1 or batch_size < 1:
        raise ConfigError("--top-k and --batch-size must be positive")
    templates = templates if templates is not None else corpus in ("TREx", "Google_RE")
    adapters = dict(adapters or {})
    if compare and not adapters:
        raise ConfigError("--compare needs --adapters: it compares the base with and without them")
    if uhn and corpus not in ("TREx", "Google_RE"):
        raise ConfigError("LAMA-UHN is defined for TREx and Google_RE only")
    times = {}
    t = time.perf_counter()
    lama_corpus = lama.read_corpus(data, corpus, templates)
    common = lama.read_common_vocab(common_vocab) if common_vocab else None
    hub = load_hub(roberta_dir, adapters, fusion, precision)
    vocab = lama.Vocabulary(hub.dictionary, hub.bpe, common)
    scorer = lama.MaskedLMScorer(hub)
    times["load"] = time.perf_counter() - t

    removed = {}
    if uhn:
        t = time.perf_counter()
        if uhn_model:
            judge_hub = load_hub(uhn_model, {}, fusion, precision)
            judge, judge_vocab = lama.MaskedLMScorer(judge_hub), lama.Vocabulary(judge_hub.dictionary, judge_hub.bpe)
        else:  # the probed base, without adapters, over its whole-word vocabulary
            judge, judge_vocab = scorer, (vocab if common is None else lama.Vocabulary(hub.dictionary, hub.bpe))
        lama_corpus.facts, removed = uhn_filters.apply_uhn(
            lama_corpus.facts, lambda texts: lama.top_words(texts, judge, judge_vocab, uhn_filters.NAME_TOP_K, batch_size))
        times["uhn"] = time.perf_counter() - t

    t = time.perf_counter()
    queries, skipped = lama.build_queries(lama_corpus, vocab, templates, hub.model.max_positions())
    times["queries"] = time.perf_counter() - t
    main_side = "adapters" if adapters else "base"
    sides = ["base", "adapters"] if compare else [main_side]
    t = time.perf_counter()
    ranked = lama.run_queries(queries, scorer, vocab, top_k, batch_size, sides)
    times["forward"] = time.perf_counter() - t

    predictions = []
    ranks = {side: {r: [] for r in lama_corpus.relations} for side in sides}
    objects = {r: [] for r in lama_corpus.relations}
    for q in queries:
        f = q.fact
        record = {"id": f.id, "relation": f.relation, "sub_label": f.sub_label, "obj_label": f.obj_label, "query": q.text}
        topk, rank = ranked[id(q)][main_side]
        record.update(topk=topk, rank=rank, correct=rank == 1)
        if compare:
            b_topk, b_rank = ranked[id(q)]["base"]
            record["without_adapters"] = {"topk": b_topk, "rank": b_rank, "correct": b_rank == 1}
        predictions.append(record)
        objects[f.relation].append(f.obj_label)
        for side in sides:
            ranks[side][f.relation].append(ranked[id(q)][side][1])

    def summary(side):
        rels = {r: lama.metrics(ranks[side][r]) for r in lama_corpus.relations}
        return rels, {f"macro_{k}": lama.macro(rels, k) for k in ("p@1", "p@10", "mrr")}

    relations, macros = summary(main_side)
    for name, m in relations.items():
        m.update(majority(objects[name]))  # chance for exactly the facts probed
        m["label"] = lama_corpus.relations[name].label
        m["skipped"] = dict(skipped[name])
        if uhn:
            m["uhn_removed"] = dict(removed.get(name, {}))
    total_skipped = sum((Counter(s) for s in skipped.values()), Counter())
    results = {
        "corpus": corpus,
        "uhn": bool(uhn),
        "queries": "templates" if templates else "evidence",
        "model": {"roberta_dir": roberta_dir, "adapters": adapters, "fusion": fusion,
                  "precision": hub.precision, "precision_reason": hub.precision_reason},
        "candidates": {
            "vocabulary": f"common vocabulary {common_vocab}" if common else "the base's whole-word tokens",
            "size": len(vocab.words),
            **({"common_vocab_words_not_single_tokens": vocab.common_unusable} if common else {}),
        },
        "top_k": top_k,
        "relations": relations,
        **macros,
        "macro_majority": lama.macro(relations, "majority"),
        "n_relations": sum(1 for m in relations.values() if m["n"]),
        "n_facts": len(predictions),
        "skipped": dict(total_skipped),
        "skip_reasons": {r: lama.SKIP_REASONS[r] for r in total_skipped},
        "files": lama_corpus.files,
    }
    if uhn:
        results["uhn_removed"] = dict(sum((Counter(c) for c in removed.values()), Counter()))
        if not any(name in uhn_filters.PERSON_RELATIONS for name in lama_corpus.relations):
            results["uhn_note"] = "no person relation in this corpus: the person-name filter had nothing to judge"
    if compare:
        base_rel, base_macros = summary("base")
        results["without_adapters"] = {"relations": base_rel, **base_macros}
        results["disagreements"] = len(report.disagreements(predictions))
    results["seconds"] = {k: round(v, 2) for k, v in times.items()}
    results["provenance"] = provenance.collect(dtype=hub.precision, threads=torch.get_num_threads(), device=hub.device.type)

    if out is not None:
        os.makedirs(out, exist_ok=True)
        with atomic.atomic_open(os.path.join(out, "predictions.jsonl")) as f:
            for record in predictions:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        with atomic.atomic_open(os.path.join(out, "results.json")) as f:
            json.dump(results, f, indent=1, ensure_ascii=False)
        atomic.write_text(os.path.join(out, "results.md"), report.markdown(results, predictions, table6_rows))
    return results
