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

from conftest import REPO, load_json
from kadapter_fairseq.experiment import study

KT = os.path.join(REPO, "examples", "data", "fewrel", "knowledge_transfer")
PRETRAIN = ("pretrain_fac.json", "pretrain_shuffled.json", "pretrain_offtopic.json")


def load(*parts):
    return load_json(os.path.join(KT, *parts))


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


def golden_case():
    """A fixed case (negative labels, missing predictions, 3 runs against 2), drawn as when its numbers were recorded."""
    rng = np.random.default_rng(42)
    labels = ["no_relation", "r1", "r2", "r3"]
    gold = [labels[i] for i in rng.integers(0, 4, 60)]

    def preds(acc):
        out = []
        for g in gold:
            u = rng.random()
            out.append(g if u < acc else (None if u > 0.97 else labels[rng.integers(0, 4)]))
        return out

    a = [preds(0.7) for _ in range(3)]
    b = [preds(0.5) for _ in range(2)]
    return gold, a, b


def test_bootstrap_gives_the_numbers_it_gave_before_the_typed_rewrite():
    """The study pre-registered seeded percentile intervals: the numbers the implementation gave at
    9109a2b (where the published study results were computed) for a fixed case, to the last digit."""
    gold, a, b = golden_case()
    ci = study.bootstrap_diff(gold, a, b, n_boot=500, seed=3)
    assert (ci["diff"], ci["low"], ci["high"]) == (0.2146101903007981, 0.10330428915765034, 0.3243754336017201)
    assert (ci["n_examples"], ci["seeds_a"], ci["seeds_b"]) == (60, 3, 2)


def test_bootstrap_agrees_with_scipys_percentile_bootstrap():
    """Same statistic, scipy's own resampling: the percentile intervals agree within Monte Carlo error."""
    from scipy.stats import bootstrap

    gold, a, b = golden_case()
    counts_a = sum(study.relation_counts(gold, p) for p in a)
    counts_b = sum(study.relation_counts(gold, p) for p in b)

    def diff(idx, axis=-1):  # idx: resampled example indices, (..., n)
        idx = idx.astype(int)
        return study.micro_f1(counts_a[idx].sum(-2)) - study.micro_f1(counts_b[idx].sum(-2))

    ref = bootstrap((np.arange(len(gold)),), diff, n_resamples=4000, method="percentile", vectorized=True,
                    random_state=np.random.default_rng(11)).confidence_interval
    ours = study.bootstrap_diff(gold, a, b, n_boot=4000, seed=5)
    assert ours["low"] == pytest.approx(ref.low, abs=0.02) and ours["high"] == pytest.approx(ref.high, abs=0.02)


def test_study_counts_with_the_scorers_own_counting():
    """study.relation_counts is classification.relation_example_counts row by row (one implementation)."""
    from kadapter_fairseq.scoring.classification import relation_counts, relation_example_counts

    gold, a, _ = golden_case()
    per_example = study.relation_counts(gold, a[0])
    assert per_example.tolist() == [list(relation_example_counts(g, p)) for g, p in zip(gold, a[0])]
    summed = relation_counts(zip(gold, a[0]))
    assert per_example.sum(0).tolist() == [summed["tp"], summed["fp"], summed["fn"]]


def test_statements_say_whether_the_interval_excludes_zero():
    h = {"id": "H1", "arm": "fac", "versus": "no-knowledge", "claim": "knowledge helps"}
    up = study.statement(h, "finetune, 10 per relation", {"diff": 0.05, "low": 0.01, "high": 0.09})
    assert "[+0.010, +0.090] excludes zero" in up and "evidence that knowledge helps" in up
    flat = study.statement(h, "efficient", {"diff": 0.01, "low": -0.02, "high": 0.04})
    assert "includes zero: no evidence that knowledge helps" in flat
    down = study.statement(h, "efficient", {"diff": -0.05, "low": -0.09, "high": -0.01})
    assert "excludes zero, below it" in down and "scores lower" in down


def test_statements_add_welch_over_knowledge_seeds_and_the_joint_reading():
    """With knowledge seeds as units, a difference is established only when the interval and Welch's
    test over units agree; with downstream seeds as units Welch is reported without that verdict."""
    h = {"id": "H1", "arm": "fac", "versus": "no-knowledge", "claim": "knowledge helps"}
    up = {"diff": 0.05, "low": 0.01, "high": 0.09}
    flat = {"diff": 0.01, "low": -0.02, "high": 0.04}
    tight = study.unit_test([0.50, 0.51, 0.52], [0.40, 0.41, 0.42], "knowledge_seed")  # t = 12.2, df = 4
    loose = study.unit_test([0.50, 0.30, 0.70], [0.40, 0.41, 0.42], "knowledge_seed")
    assert tight["p"] == pytest.approx(2.57e-4, rel=0.01) and tight["exceeds_noise"] and not loose["exceeds_noise"]
    said = study.statement(h, "efficient", up, tight)
    assert "Over knowledge seeds (n = 3 and 3): +0.100, Welch p < 0.001: exceeds the knowledge-seed spread." in said
    assert said.endswith("Both statistics agree: fac scores higher than no-knowledge.")
    assert study.statement(h, "efficient", up, loose).endswith("The two statistics disagree: not established.")
    assert study.statement(h, "efficient", flat, loose).endswith("Neither statistic separates fac from no-knowledge.")
    seeds = study.statement(h, "efficient", up, study.unit_test([0.50, 0.51, 0.52], [0.40, 0.41, 0.42], "seed"))
    assert seeds.endswith("exceeds the seed spread.")  # no joint verdict: the first design did not register one
    few = study.unit_test([0.5], [0.4, 0.41], "knowledge_seed")
    assert study.statement(h, "efficient", up, few).endswith("too few units for a noise estimate.")


# ---------------------------------------------------------------------------------------------- the section


def fake_results(out_dir, gold_path, variants, sizes, units, accuracy):
    """Finished runs as the report hands them to the study (``RunResult``s over run directories laid
    out by ``Layout``), with predictions right at ``accuracy``; ``units``: [(knowledge seed, seeds)]."""
    from kadapter_fairseq.experiment.layout import Layout
    from kadapter_fairseq.experiment.report import RunResult

    gold = json.loads(open(gold_path).read())
    rng = np.random.default_rng(0)
    layout, out = Layout(out_dir), []
    for variant in variants:
        for size in sizes:
            for kseed, seeds in units:
                for s in seeds:
                    d = layout.run_dir("kt", variant, size, s, kseed)
                    os.makedirs(d)
                    right = rng.random(len(gold)) < accuracy[variant]
                    with open(os.path.join(d, "test_predictions.jsonl"), "w") as f:
                        for rec, ok in zip(gold, right):
                            f.write(json.dumps({"id": rec["id"], "label": rec["relation"] if ok else "wrong"}) + "\n")
                    n_right = int(right.sum())
                    f1 = 2 * n_right / (2 * n_right + 2 * (len(gold) - n_right))
                    out.append(RunResult(task="kt", variant=variant, size=size, seed=s, knowledge_seed=kseed,
                                         phase=variant.split("-")[-1], metric="f1", value=f1, dir=d,
                                         predictions=os.path.join(d, "test_predictions.jsonl"), scores={"f1": f1}))
    return layout, out


def study_record(gold_path, variants, sizes, units, arms):
    from kadapter_fairseq.experiment.config import StudySpec, Unit
    from kadapter_fairseq.experiment.plan import ExperimentRecord, TaskRecord, VariantRecord

    study_spec = StudySpec(task="kt", reference="no-knowledge", negative_label="no_relation", n_boot=300, seed=0,
                           arms={a: {p: f"{a}-{p}" for p in ("finetune", "efficient")} for a in arms},
                           hypotheses=[{"id": "H1", "arm": "fac", "versus": "no-knowledge", "claim": "knowledge helps"}])
    return ExperimentRecord(
        name="kt", source="kt.yaml", tasks={"kt": TaskRecord("f1", "test", "tacred", sizes, str(gold_path))},
        variants=[VariantRecord(v, {}, None, v.split("-")[-1]) for v in variants], seeds=[s for _, ss in units for s in ss],
        units=[Unit(k, ss) for k, ss in units], controls={}, train_phase="efficient", dtype="fp32", precision="fp32",
        threads=1, knowledge={}, study=study_spec, config={})


def gold_file(tmp_path, n=200):
    gold_path = tmp_path / "test.json"
    gold_path.write_text(json.dumps([{"id": f"x{i}", "token": ["a", "b"], "subj_start": 0, "subj_end": 0,
                                      "obj_start": 1, "obj_end": 1, "relation": f"r{i % 4}"} for i in range(n)]))
    return gold_path


def test_study_section_from_run_results(tmp_path):
    from kadapter_fairseq.experiment.sizes import PER_LABEL, TrainSize

    gold_path = gold_file(tmp_path)
    arms = {"fac": 0.8, "no-knowledge": 0.4}
    variants = {f"{a}-{p}": acc for a, acc in arms.items() for p in ("finetune", "efficient")}
    sizes = [TrainSize(PER_LABEL, 10), TrainSize(PER_LABEL, 50)]
    units = [(None, [1, 2])]
    layout, results = fake_results(str(tmp_path), str(gold_path), variants, sizes, units, variants)
    md, result = study.study_section(layout, study_record(gold_path, variants, sizes, units, arms), results)
    assert result["metric_mismatches"] == []
    assert result["sizes"] == ["10-per-label", "50-per-label"] and result["unit"] == "seed"
    assert len(result["hypotheses"]) == 4  # 2 phases x 2 sizes
    for h in result["hypotheses"]:  # accuracy 0.8 against 0.4: the interval lies well above zero
        assert 0.1 < h["interval"]["low"] < h["interval"]["diff"] < h["interval"]["high"]
        # equal test sets per seed and no negative label: pooled micro-F1 = the mean of the seeds' scores
        assert h["interval"]["diff"] == pytest.approx(h["interval"]["mean_diff"])
    for row in result["table"]:  # each seed a unit: its values are the runs' scores
        runs = [r for r in results if r.variant == row["variant"] and r.size.label == row["size"]]
        assert row["values"] == [round(r.value, 6) for r in sorted(runs, key=lambda r: r.seed)] and row["n"] == 2
    assert "H1 (finetune, 10 per relation): fac - no-knowledge" in md and "excludes zero" in md
    assert "mean ± std over seeds (n seeds)" in md
    # each seed a unit: Welch's test over the two seeds' scores beside every interval
    for h in result["hypotheses"]:
        w = h["interval"]["welch"]
        assert (w["unit"], w["n_a"], w["n_b"]) == ("seed", 2, 2) and w["diff"] == pytest.approx(h["interval"]["mean_diff"])
        assert "Over seeds (n = 2 and 2)" in h["statement"]
    assert "Each knowledge entry was trained once" in md
    # the difference at each size, per hypothesis and phase, and which way it moved
    diff = {(h["phase"], h["size"]): h["interval"]["diff"] for h in result["hypotheses"]}
    assert [(t["id"], t["phase"]) for t in result["trends"]] == [("H1", "efficient"), ("H1", "finetune")]
    for t in result["trends"]:
        assert t["diffs"] == {s: diff[(t["phase"], s)] for s in ("10-per-label", "50-per-label")}
        assert t["change"] == pytest.approx(t["diffs"]["50-per-label"] - t["diffs"]["10-per-label"])
        way = "larger" if t["change"] > 0 else "smaller"
        assert f"(50 per relation): {way} at the largest training size" in t["statement"] and t["statement"] in md
    assert "### Over training sizes" in md
    assert os.path.isfile(tmp_path / "study.png")
    json.dumps(result)  # the report writes it as JSON


def test_study_takes_the_knowledge_seed_as_its_unit(tmp_path):
    """Two knowledge seeds x two downstream seeds: a unit's score is the mean of its two runs; the table
    shows mean ± std over the two units; the interval still pools all four runs."""
    from kadapter_fairseq.experiment.sizes import TrainSize

    gold_path = gold_file(tmp_path, 120)
    arms = {"fac": 0.7, "no-knowledge": 0.5}
    variants = {f"{a}-{p}": acc for a, acc in arms.items() for p in ("efficient",)}
    units = [(1, [1, 2]), (2, [3, 4])]
    layout, results = fake_results(str(tmp_path), str(gold_path), variants, [TrainSize()], units, variants)
    record = study_record(gold_path, variants, [TrainSize()], units, arms)
    record.study.arms = {a: {"efficient": f"{a}-efficient"} for a in arms}
    md, result = study.study_section(layout, record, results)
    assert result["unit"] == "knowledge_seed" and result["sizes"] == [None]
    for row in result["table"]:
        by_unit = [[r.value for r in results if r.variant == row["variant"] and r.knowledge_seed == k] for k in (1, 2)]
        means = [sum(v) / 2 for v in by_unit]
        assert row["seeds"] == [1, 2] and row["n"] == 2 and row["runs"] == {"1": [1, 2], "2": [3, 4]}
        assert row["values"] == [round(m, 6) for m in means]
        assert row["mean"] == pytest.approx(sum(means) / 2) and row["std"] == pytest.approx(abs(means[0] - means[1]) / math.sqrt(2))
    (h,) = result["hypotheses"]
    assert h["interval"]["seeds_a"] == 4 and h["interval"]["seeds_b"] == 4  # every run's predictions, pooled
    assert "over knowledge seeds (n), each the mean of its downstream seeds" in md


# ---------------------------------------------------------------------------------------------- CI-sized study


def hand_interval(runs_dir, arm, versus, size, seeds, n_boot, seed):
    """``(diff, low, high)`` of pooled micro-F1(arm) - micro-F1(versus), written out from the files."""
    gold = load("downstream", "test.json")
    n = len(gold)

    def counts(variant):
        total = np.zeros((n, 3))
        for s in seeds:
            with open(runs_dir / variant / size / f"seed{s}" / "test_predictions.jsonl", encoding="utf-8") as f:
                pred = {str(p["id"]): p["label"] for p in map(json.loads, f)}
            for i, rec in enumerate(gold):
                g, p = rec["relation"], pred.get(str(rec["id"]))
                correct = p == g
                guessed = p is None or p != "no_relation"
                total[i] += [guessed and correct, guessed and not correct, g != "no_relation" and not correct]
        return total

    def f1(c):
        return 2 * c[..., 0] / (2 * c[..., 0] + c[..., 1] + c[..., 2])

    a, b = counts(arm), counts(versus)
    weights = np.random.default_rng(seed).multinomial(n, [1.0 / n] * n, size=n_boot)
    diffs = f1(weights @ a) - f1(weights @ b)
    return f1(a.sum(0)) - f1(b.sum(0)), np.percentile(diffs, 2.5), np.percentile(diffs, 97.5)


def test_ci_sized_study_through_the_experiment_runner(tiny_base, tmp_path):
    """The study's own YAML, cut to the tiny base, 2 seeds, 2 sizes, 3 arms of the efficient phase and a
    few updates, run by kadapter-experiment: every run finishes and the report carries the study."""
    from kadapter_fairseq.experiment.config import compose_raw, validate
    from kadapter_fairseq.experiment.runner import run_experiment

    raw = compose_raw(os.path.join(REPO, "examples", "experiments", "knowledge_transfer.yaml"), [])
    keep = {"fac": "fac-efficient", "shuffled": "shuffled-efficient", "no-knowledge": "no-knowledge-efficient"}
    raw.update(seeds=[1, 2], knowledge_seeds=None, max_examples_per_label=[2, 4], threads=1,
               base={"roberta_path": tiny_base}, arch_overrides=[])  # the train configs' adapter sizes are the tiny base's
    raw["variants"] = list(keep.values())
    raw["custom_variants"] = {v: raw["custom_variants"][v] for v in keep.values()}
    raw["controls"] = ["no-knowledge-efficient"]
    raw["compared"] = ["fac-efficient", "shuffled-efficient"]
    del raw["knowledge"]["fac_offtopic"]
    for k in raw["knowledge"].values():
        k.update(updates=3, batch_size=8)
    raw["tasks"]["fewrel_kt"].update(updates=4, batch_size=8, validations=1)
    raw["study"]["arms"] = {arm: {"efficient": v} for arm, v in keep.items()}
    raw["study"]["hypotheses"] = [h for h in raw["study"]["hypotheses"] if h["arm"] in keep and h["versus"] in keep]
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
        # the interval computed by hand from the prediction files: per-example TACRED counts, the study's
        # seeded multinomial draws, pooled F1 per replicate, 2.5/97.5 percentiles
        arm, versus = (keep[h["arm"]], keep[h["versus"]])
        diff, low, high = hand_interval(out / "runs" / "fewrel_kt", arm, versus, h["size"], [1, 2], n_boot=200, seed=0)
        assert h["interval"]["diff"] == pytest.approx(diff, abs=1e-12)
        assert (h["interval"]["low"], h["interval"]["high"]) == pytest.approx((low, high), abs=1e-12)
    md = (out / "results.md").read_text()
    assert "### Hypotheses" in md and "H2 (efficient, 4 per relation): fac - shuffled" in md
    # the report's seed-noise statements name the study's own control
    assert [(c["variant"], c["baseline"]) for c in results["comparisons"]][:2] == \
        [("fac-efficient", "no-knowledge-efficient")] * 2
    assert "fac-efficient beats no-knowledge-efficient beyond seed noise on fewrel_kt (2 per label): " in md
    assert (out / "study.png").is_file()
    # the shuffled adapter was trained on the shuffled file, the fac adapter on the real one
    prep = {n: json.loads((out / "knowledge" / n / "data" / "prep.json").read_text()) for n in ("fac", "fac_shuffled")}
    assert prep["fac"]["sources"][0].endswith("pretrain_fac.json")
    assert prep["fac_shuffled"]["sources"][0].endswith("pretrain_shuffled.json")


def test_repaired_study_yaml_with_knowledge_seeds_and_multitask(tiny_base, tmp_path):
    """The study's YAML as shipped (every arm, both phases, the multitask base, knowledge seeds), cut only
    by overrides to the tiny base, 2 knowledge seeds x 1 downstream seed, one size and a few updates: the
    runner trains every knowledge entry once per knowledge seed, and the study takes the knowledge seed
    as its unit, with Welch's test over units beside the bootstrap interval."""
    from kadapter_fairseq.experiment import stats
    from kadapter_fairseq.experiment.config import compose_raw, validate
    from kadapter_fairseq.experiment.runner import run_experiment

    overrides = [f"+base.roberta_path={tiny_base}", "~base.build", "knowledge_seeds=[1,2]", "seeds=[1,2]",
                 "max_examples_per_label=[4]", "threads=1", "arch_overrides=[]", "study.n_boot=200",
                 "tasks.fewrel_kt.updates=4", "tasks.fewrel_kt.batch_size=8", "tasks.fewrel_kt.validations=1"]
    for name in ("fac", "fac_shuffled", "fac_offtopic", "multitask"):
        overrides += [f"knowledge.{name}.updates=3", f"knowledge.{name}.batch_size=8"]
    raw = compose_raw(os.path.join(REPO, "examples", "experiments", "knowledge_transfer.yaml"), overrides)
    exp = validate(raw, source="knowledge_transfer.yaml (CI overrides)")
    out = tmp_path / "study"
    results = run_experiment(exp, str(out))

    # every knowledge entry trained once per knowledge seed; the multitask base on the fac data, base unfrozen
    for k in (1, 2):
        assert (out / "knowledge" / "fac" / f"kseed{k}" / "adapter.pt").is_file()
    assert (out / "knowledge/fac/kseed1/adapter.pt").read_bytes() != (out / "knowledge/fac/kseed2/adapter.pt").read_bytes()
    exports = [json.loads((out / "knowledge" / "multitask" / f"kseed{k}" / "base" / "export.json").read_text())
               for k in (1, 2)]
    assert all(e["train_phase"] == "full" and e["tensors_changed"] > 0 for e in exports)
    assert exports[0]["fingerprint"]["weights"] != exports[1]["fingerprint"]["weights"]
    log = (out / "knowledge" / "multitask" / "kseed2" / "train.log").read_text()
    assert f"task.data={out}/knowledge/fac/data" in log and "model.train_phase=full" in log
    # a multitask run reads the base of its own knowledge seed
    run_cfg = (out / "runs/fewrel_kt/multitask-finetune/4-per-label/kseed2/seed2/config.yaml").read_text()
    assert "knowledge/multitask/kseed2/base" in run_cfg and "knowledge/multitask/kseed1" not in run_cfg

    st = results["study"]
    assert st["metric_mismatches"] == [] and st["unit"] == "knowledge_seed"
    assert st["arms"] == ["fac", "shuffled", "off-topic", "multitask", "no-knowledge", "roberta"]
    assert {(r["arm"], r["phase"]) for r in st["table"]} == {(a, p) for a in st["arms"] for p in ("finetune", "efficient")}
    value = {}  # (variant, knowledge seed) -> the run's score, read from its metrics.json
    for r in st["table"]:
        assert r["n"] == 2 and r["runs"] == {"1": [1], "2": [2]}
        for k, s in ((1, 1), (2, 2)):
            m = json.loads((out / "runs/fewrel_kt" / r["variant"] / "4-per-label" / f"kseed{k}" / f"seed{s}" /
                            "metrics.json").read_text())
            value[(r["variant"], k)] = m["value"]
        assert r["values"] == [round(value[(r["variant"], k)], 6) for k in (1, 2)]
    # Welch over the two units of each side, beside the interval pooled over both runs
    for c in st["comparisons"] + [h["interval"] for h in st["hypotheses"]]:
        a = [value[(f"{c['arm']}-{c['phase']}", k)] for k in (1, 2)]
        b = [value[(f"{c['versus']}-{c['phase']}", k)] for k in (1, 2)]
        w = c["welch"]
        assert (w["unit"], w["n_a"], w["n_b"]) == ("knowledge_seed", 2, 2)
        assert w["diff"] == pytest.approx(sum(a) / 2 - sum(b) / 2) == pytest.approx(c["mean_diff"])
        expected = stats.welch(a, b)
        assert (w["p"] is None) if expected is None else w["p"] == pytest.approx(expected[2], abs=1e-9)
        assert c["seeds_a"] == c["seeds_b"] == 2
    assert {c["arm"] for c in st["comparisons"]} == {"fac", "shuffled", "off-topic", "multitask", "roberta"}
    assert sorted((h["id"], h["phase"]) for h in st["hypotheses"]) == \
        sorted((f"H{i}", p) for i in range(1, 6) for p in ("finetune", "efficient"))
    md = (out / "results.md").read_text()
    assert "H4 (finetune, 4 per relation): fac - multitask" in md and "H5 (efficient, 4 per relation): multitask - roberta" in md
    assert md.count("Over knowledge seeds (n = 2 and 2)") == 10
    assert "mean ± std over knowledge seeds (n), each the mean of its downstream seeds" in md
    # the report's seed-noise comparisons: every compared arm against the two controls of its own phase
    pairs = {(c["variant"], c["baseline"]) for c in results["comparisons"]}
    for phase in ("finetune", "efficient"):
        for arm in ("fac", "shuffled", "off-topic", "multitask"):
            assert {(f"{arm}-{phase}", f"no-knowledge-{phase}"), (f"{arm}-{phase}", f"roberta-{phase}")} <= pairs
    assert all(v.rsplit("-", 1)[1] == b.rsplit("-", 1)[1] for v, b in pairs)
    assert "multitask-finetune beats no-knowledge-finetune beyond seed noise on fewrel_kt (4 per label): " in md
