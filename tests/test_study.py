"""The knowledge-transfer study's machinery: disjoint splits, shuffled labels at chance, the bootstrap.

The data checks read the files shipped in examples/data/fewrel/knowledge_transfer/ (what the study
runs on); the bootstrap is checked on hand-made cases whose interval is known exactly.
"""
import json
import math
import os
from collections import Counter

import numpy as np
import pytest

from kadapter_fairseq.experiment import study

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KT = os.path.join(REPO, "examples", "data", "fewrel", "knowledge_transfer")
PRETRAIN = ("pretrain_fac.json", "pretrain_shuffled.json", "pretrain_offtopic.json")


def load(*parts):
    with open(os.path.join(KT, *parts), encoding="utf-8") as f:
        return json.load(f)


def norm(text):
    return " ".join(str(text).lower().split())


def fewrel_sides(doc):
    """(entity names, Wikidata ids, mention surfaces, sentences) of a FewRel document."""
    names, ids, surfaces, sentences = set(), set(), set(), set()
    for instances in doc.values():
        for inst in instances:
            words = inst["tokens"]
            for mention in (inst["h"], inst["t"]):
                names.add(norm(mention[0]))
                ids.add(mention[1])
                surfaces.add(norm(" ".join(words[i] for i in mention[2][0])))
            sentences.add(norm(" ".join(words)))
    return names, ids, surfaces, sentences


def downstream_records():
    return {split: load("downstream", f"{split}.json") for split in ("train", "valid", "test")}


# ---------------------------------------------------------------------------------------------- the data


def test_downstream_shares_no_entity_or_sentence_with_any_pretraining_set():
    splits = downstream_records()
    records = [r for recs in splits.values() for r in recs]
    down_names = {norm(r[f"{s}_name"]) for r in records for s in ("subj", "obj")}
    down_ids = {r[f"{s}_qid"] for r in records for s in ("subj", "obj")}
    down_surfaces = {norm(" ".join(r["token"][r[f"{s}_start"]:r[f"{s}_end"] + 1])) for r in records for s in ("subj", "obj")}
    down_sentences = {norm(" ".join(r["token"])) for r in records}
    by_split = [{norm(" ".join(r["token"])) for r in recs} for recs in splits.values()]
    assert sum(map(len, by_split)) == len(down_sentences)  # no sentence in two downstream splits either
    for name in PRETRAIN:
        names, ids, surfaces, sentences = fewrel_sides(load(name))
        assert not down_names & names, name
        assert not down_ids & ids, name
        assert not down_surfaces & surfaces, name
        assert not down_sentences & sentences, name
    with open(os.path.join(KT, "base_text.txt"), encoding="utf-8") as f:
        base = {norm(line) for line in f}
    assert not down_sentences & base


def test_downstream_is_over_relations_a_and_offtopic_over_relations_b():
    prep = load("prep.json")
    a, b = set(prep["relations_a"]), set(prep["relations_b"])
    assert len(a) == len(b) == 8 and not a & b
    splits = downstream_records()
    for split, recs in splits.items():
        assert {r["relation"] for r in recs} == a, split
    assert Counter(r["relation"] for r in splits["test"]) == {r: 100 for r in a}
    assert Counter(r["relation"] for r in splits["train"]) == {r: 200 for r in a}
    assert set(load("pretrain_fac.json")) == a
    assert set(load("pretrain_offtopic.json")) == b
    n_fac = sum(len(v) for v in load("pretrain_fac.json").values())
    assert sum(len(v) for v in load("pretrain_offtopic.json").values()) == n_fac
    # the splits are disjoint among themselves too
    ids = [r["id"] for recs in splits.values() for r in recs]
    assert len(ids) == len(set(ids))


def test_shuffled_labels_agree_with_the_sentences_only_by_chance():
    fac, shuffled = load("pretrain_fac.json"), load("pretrain_shuffled.json")
    true = {json.dumps(inst, sort_keys=True): rel for rel, insts in fac.items() for inst in insts}
    pairs = [(true[json.dumps(inst, sort_keys=True)], rel) for rel, insts in shuffled.items() for inst in insts]
    # the same sentences, each once, and the same label counts
    assert len(pairs) == len(true)
    assert Counter(t for t, _ in pairs) == Counter(s for _, s in pairs)
    n = len(pairs)
    chance = sum((c / n) ** 2 for c in Counter(t for t, _ in pairs).values())
    agreement = sum(t == s for t, s in pairs) / n
    sd = math.sqrt(chance * (1 - chance) / n)
    assert abs(agreement - chance) < 4 * sd, (agreement, chance, sd)
    assert abs(chance - 1 / 8) < 0.01
    # and per relation: no label keeps most of its own sentences
    for rel in fac:
        own = [s for t, s in pairs if t == rel]
        assert sum(s == rel for s in own) / len(own) < 0.25


def test_the_generator_keeps_linked_instances_on_one_side(tmp_path):
    """A hand-made FewRel file: instances linked through a shared entity or sentence never straddle sides."""
    from data_prep.knowledge_transfer import main

    def inst(words, h, hid, t, tid):
        toks = words.split()
        return {"tokens": toks, "h": [h, hid, [[toks.index(h)]]], "t": [t, tid, [[toks.index(t)]]]}

    doc = {}
    for r in ("P1", "P2", "P3", "P4"):
        doc[r] = [inst(f"x{r}{i} rel{r} y{r}{i} .", f"x{r}{i}", f"Qx{r}{i}", f"y{r}{i}", f"Qy{r}{i}") for i in range(12)]
    # a hub tail shared by six P1 instances, and a P2 instance whose sentence repeats a P1 one
    doc["P1"] += [inst(f"h{i} rel hub .", f"h{i}", f"Qh{i}", "hub", "Qhub") for i in range(6)]
    doc["P2"].append(dict(doc["P1"][0], h=["xP10", "QxP10", [[0]]], t=["yP10", "QyP10", [[2]]]))
    src = tmp_path / "fewrel.json"
    src.write_text(json.dumps(doc))
    out = tmp_path / "out"
    main([str(src), "--out", str(out), "--relations", "2", "--train-per-relation", "3", "--valid-per-relation", "1",
          "--test-per-relation", "2", "--pretrain-per-relation", "5", "--max-group", "4", "--seed", "3"])
    prep = json.loads((out / "prep.json").read_text())
    assert all(v == {"shared_entities": 0, "shared_sentences": 0} for v in prep["overlap_with_downstream"].values())
    records = [r for s in ("train", "valid", "test") for r in json.loads((out / "downstream" / f"{s}.json").read_text())]
    assert all(r["obj_name"] != "hub" for r in records)  # a group above --max-group never goes downstream
    for r in set(prep["relations_a"]):
        assert prep["downstream"]["test"][r] == 2 and prep["downstream"]["train"][r] == 3
    assert prep["pretrain"]["fac"] == prep["pretrain"]["shuffled"]
    assert sum(prep["pretrain"]["offtopic"].values()) == sum(prep["pretrain"]["fac"].values())


def test_the_shipped_files_are_what_the_generator_writes(tmp_path):
    """data_prep.knowledge_transfer on FewRel val_wiki reproduces the shipped folder byte for byte."""
    from conftest import shared_data
    from data_prep.knowledge_transfer import main

    source = shared_data("fewrel", "val_wiki.json")
    out = tmp_path / "kt"
    main([source, "--out", str(out)])
    for name in PRETRAIN + ("base_text.txt", "downstream/train.json", "downstream/valid.json", "downstream/test.json"):
        assert (out / name).read_bytes() == open(os.path.join(KT, name), "rb").read(), name
    made, shipped = json.loads((out / "prep.json").read_text()), load("prep.json")
    for key in ("relations_a", "relations_b", "downstream", "pretrain", "overlap_with_downstream", "counts"):
        assert made[key] == shipped[key], key


# ---------------------------------------------------------------------------------------------- the statistic


def test_micro_f1_counts_like_the_tacred_scorer(tmp_path):
    from kadapter_fairseq.scoring.classification import score_tacred

    gold = ["r1", "no_relation", "r2", "r1", "r2"]
    pred = ["r1", "r2", "no_relation", "r2", None]  # None: not predicted (a wrong guess for the scorer)
    counts = study.relation_counts(gold, pred)
    assert counts.sum(0).tolist() == [1, 3, 3]  # tp; fp: r2 on a negative, r2 for r1, the missing one; fn
    assert study.micro_f1(counts.sum(0)) == pytest.approx(2 / 8)
    g, p = tmp_path / "gold.json", tmp_path / "pred.jsonl"
    g.write_text(json.dumps([{"id": i, "token": ["a", "b"], "subj_start": 0, "subj_end": 0, "obj_start": 1,
                              "obj_end": 1, "relation": r} for i, r in enumerate(gold)]))
    p.write_text("".join(json.dumps({"id": i, "label": x}) + "\n" for i, x in enumerate(pred) if x is not None))
    assert score_tacred(str(g), str(p))["f1"] == pytest.approx(2 / 8)


def test_bootstrap_of_identical_predictions_is_exactly_zero():
    rng = np.random.default_rng(1)
    gold = list(rng.choice(["a", "b", "c"], size=50))
    seeds = [list(rng.choice(["a", "b", "c"], size=50)) for _ in range(3)]
    ci = study.bootstrap_diff(gold, seeds, [list(s) for s in seeds], n_boot=200, seed=0)
    assert (ci["diff"], ci["low"], ci["high"]) == (0.0, 0.0, 0.0)


def binomial_quantile(n, p, q):
    """Smallest k with P(X <= k) >= q for X ~ Binomial(n, p)."""
    cdf = 0.0
    for k in range(n + 1):
        cdf += math.comb(n, k) * p ** k * (1 - p) ** (n - k)
        if cdf >= q - 1e-12:
            return k
    return n


def test_bootstrap_interval_matches_the_binomial_one():
    """Arm a is always right, arm b right on k of n: a resample's difference is the share of b's
    errors drawn, Binomial(n, (n-k)/n) / n, so the 95% interval is that law's 2.5% and 97.5% quantiles."""
    n, k = 40, 30
    gold = ["r"] * n
    a = [["r"] * n]
    b = [["r"] * k + ["s"] * (n - k)]
    ci = study.bootstrap_diff(gold, a, b, n_boot=20000, seed=7)
    assert ci["diff"] == pytest.approx((n - k) / n)
    lo = binomial_quantile(n, (n - k) / n, 0.025) / n
    hi = binomial_quantile(n, (n - k) / n, 0.975) / n
    assert abs(ci["low"] - lo) <= 1 / n + 1e-9
    assert abs(ci["high"] - hi) <= 1 / n + 1e-9
    assert ci["low"] > 0  # this interval excludes zero


def test_bootstrap_pools_seeds_and_pairs_the_draws():
    """Two seeds of a (one perfect, one all wrong) against one seed of b right on half: the pooled
    scores are equal (0.5 each), and the paired draw makes every replicate's difference exactly 0."""
    n = 30
    gold = ["r"] * n
    a = [["r"] * n, ["s"] * n]
    b = [["r"] * (n // 2) + ["s"] * (n // 2)]
    ci = study.bootstrap_diff(gold, a, b, n_boot=500, seed=0)
    assert ci["diff"] == 0.0
    assert ci["seeds_a"] == 2 and ci["seeds_b"] == 1
    # a' gets the first half right in both seeds: pooled 0.5 against b's 0.5, same examples right
    a2 = [["r"] * (n // 2) + ["s"] * (n // 2)] * 2
    ci2 = study.bootstrap_diff(gold, a2, b, n_boot=500, seed=0)
    assert (ci2["low"], ci2["high"]) == (0.0, 0.0)


def test_statements_say_whether_the_interval_excludes_zero():
    h = {"id": "H1", "arm": "fac", "versus": "no-knowledge", "claim": "knowledge helps"}
    up = study.statement(h, "finetune, 10 per relation", {"diff": 0.05, "low": 0.01, "high": 0.09})
    assert "[+0.010, +0.090] excludes zero" in up and "evidence that knowledge helps" in up
    flat = study.statement(h, "efficient", {"diff": 0.01, "low": -0.02, "high": 0.04})
    assert "includes zero: no evidence that knowledge helps" in flat
    down = study.statement(h, "efficient", {"diff": -0.05, "low": -0.09, "high": -0.01})
    assert "excludes zero, below it" in down and "scores lower" in down


# ---------------------------------------------------------------------------------------------- the section


def fake_runs(out_dir, gold_path, variants, sizes, seeds, accuracy):
    """Run directories as the experiment runner lays them out, with predictions right at ``accuracy``."""
    gold = json.loads(open(gold_path).read())
    rng = np.random.default_rng(0)
    for variant in variants:
        for size in sizes:
            for s in seeds:
                d = os.path.join(out_dir, "runs", "kt", variant, size, f"seed{s}")
                os.makedirs(d)
                right = rng.random(len(gold)) < accuracy[variant]
                with open(os.path.join(d, "test_predictions.jsonl"), "w") as f:
                    for rec, ok in zip(gold, right):
                        f.write(json.dumps({"id": rec["id"], "label": rec["relation"] if ok else "wrong"}) + "\n")
                n_right = int(right.sum())
                with open(os.path.join(d, "metrics.json"), "w") as f:
                    json.dump({"f1": 2 * n_right / (2 * n_right + 2 * (len(gold) - n_right))}, f)


def test_study_section_from_run_directories(tmp_path):
    gold_path = tmp_path / "test.json"
    gold_path.write_text(json.dumps([{"id": f"x{i}", "token": ["a", "b"], "subj_start": 0, "subj_end": 0,
                                      "obj_start": 1, "obj_end": 1, "relation": f"r{i % 4}"} for i in range(200)]))
    arms = {"fac": 0.8, "no-knowledge": 0.4}
    variants = {f"{a}-{p}": acc for a, acc in arms.items() for p in ("finetune", "efficient")}
    fake_runs(str(tmp_path), str(gold_path), variants, ["10-per-label", "50-per-label"], [1, 2], variants)
    cfg = {
        "tasks": {"kt": {"score": {"gold": str(gold_path)}}},
        "variants": list(variants),
        "study": {"task": "kt", "reference": "no-knowledge", "n_boot": 300,
                  "arms": {a: {p: f"{a}-{p}" for p in ("finetune", "efficient")} for a in arms},
                  "hypotheses": [{"id": "H1", "arm": "fac", "versus": "no-knowledge", "claim": "knowledge helps"}]},
    }
    md, result = study.study_section(str(tmp_path), cfg, rows=[])
    assert result["metric_mismatches"] == []
    assert result["sizes"] == ["10-per-label", "50-per-label"]
    assert len(result["hypotheses"]) == 4  # 2 phases x 2 sizes
    for h in result["hypotheses"]:  # accuracy 0.8 against 0.4: the interval lies well above zero
        assert 0.1 < h["interval"]["low"] < h["interval"]["diff"] < h["interval"]["high"]
        # equal test sets per seed and no negative label: pooled micro-F1 = the mean of the seeds' scores
        assert h["interval"]["diff"] == pytest.approx(h["interval"]["mean_diff"])
    assert "H1 (finetune, 10 per relation): fac - no-knowledge" in md and "excludes zero" in md
    assert os.path.isfile(tmp_path / "study.png")
    json.dumps(result)  # the report writes it as JSON


# ---------------------------------------------------------------------------------------------- CI-sized study


def test_ci_sized_study_through_the_experiment_runner(tiny_base, tmp_path):
    """The study's own YAML, cut to the tiny base, 2 seeds, 2 sizes, 3 arms of the efficient phase and a
    few updates, run by kadapter-experiment: every run finishes and the report carries the study."""
    from kadapter_fairseq.experiment.config import compose_raw, validate
    from kadapter_fairseq.experiment.runner import run_experiment

    raw = compose_raw(os.path.join(REPO, "examples", "experiments", "knowledge_transfer.yaml"), [])
    keep = {"fac": "fac-efficient", "shuffled": "shuffled-efficient", "no-knowledge": "no-knowledge-efficient"}
    raw.update(seeds=[1, 2], max_examples_per_label=[2, 4], threads=1, base={"roberta_path": tiny_base},
               arch_overrides=[])  # the train configs' adapter sizes are the tiny base's
    raw["variants"] = list(keep.values())
    raw["custom_variants"] = {v: raw["custom_variants"][v] for v in keep.values()}
    del raw["knowledge"]["fac_offtopic"]
    for k in raw["knowledge"].values():
        k.update(updates=3, batch_size=8)
    raw["tasks"]["fewrel_kt"].update(updates=4, batch_size=8, validations=1)
    raw["study"]["arms"] = {arm: {"efficient": v} for arm, v in keep.items()}
    raw["study"]["hypotheses"] = [h for h in raw["study"]["hypotheses"] if h["versus"] in keep]
    raw["study"]["n_boot"] = 200
    exp = validate(raw, source="knowledge_transfer.yaml (CI cut)")

    results = run_experiment(exp, str(tmp_path / "study"))
    out = tmp_path / "study"
    st = results["study"]
    assert st["metric_mismatches"] == []  # the study's scores are the runner's, run by run
    assert st["sizes"] == ["2-per-label", "4-per-label"] and st["phases"] == ["efficient"]
    assert {(r["arm"], r["size"]): r["n"] for r in st["table"]} == {(a, s): 2 for a in keep for s in st["sizes"]}
    assert [(h["id"], h["size"]) for h in st["hypotheses"]] == [("H1", "2-per-label"), ("H1", "4-per-label"),
                                                                 ("H2", "2-per-label"), ("H2", "4-per-label")]
    for h in st["hypotheses"]:
        assert h["interval"]["low"] <= h["interval"]["diff"] <= h["interval"]["high"]
        assert h["interval"]["n_examples"] == 800 and h["interval"]["seeds_a"] == 2
    md = (out / "results.md").read_text()
    assert "### Hypotheses" in md and "H2 (efficient, 4 per relation): fac - shuffled" in md
    assert (out / "study.png").is_file()
    # the shuffled adapter was trained on the shuffled file, the fac adapter on the real one
    prep = {n: json.loads((out / "knowledge" / n / "data" / "prep.json").read_text()) for n in ("fac", "fac_shuffled")}
    assert prep["fac"]["sources"][0].endswith("pretrain_fac.json")
    assert prep["fac_shuffled"]["sources"][0].endswith("pretrain_shuffled.json")
