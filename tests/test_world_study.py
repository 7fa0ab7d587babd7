"""The world study (examples/experiments/knowledge_world.yaml) at CI size through the experiment runner, and the
pieces it brought to the runner: the positive control printed before any arm, the hypotheses' sentences (Welch
over knowledge-seed units, the one-sample test against chance), the type baseline beside relation-classification
scores. Nothing here asserts a scientific outcome: the CI world's base is trained for a few updates."""
import json
import math
import os
from types import SimpleNamespace

import pytest
import yaml

from conftest import REPO, experiment, load_json as load

WORLD_STUDY = os.path.join(REPO, "examples", "experiments", "knowledge_world.yaml")
VARIANTS = ["roberta", "no-knowledge", "fac-rc", "fac-mlm", "shuffled", "multitask"]
PARTS = ["base", "adapter", "none"]
# a small world (its base text just long enough for 8 validation blocks, the fewest fairseq-train batches), its
# base 4 layers and H = 128 as the study's but trained 20 updates; everything else as shipped
WORLD = ["--seed", "1", "--out", "{prepared}/world", "--build-base", "--base-threads", "1", "--base-updates", "20",
         "--persons", "24", "--cities", "6", "--countries", "3", "--companies", "6", "--universities", "6",
         "--statements", "16", "--mentions", "12", "--train-templates", "4"]
CI_OVERRIDES = ["prepare.0.args=[" + ",".join(f"'{a}'" for a in WORLD) + "]", "knowledge_seeds=[1,2]", "seeds=[1,2]",
                "tasks.neutral.updates=4", "tasks.neutral.validations=2"]
CI_OVERRIDES += [f"knowledge.{k}.{key}={value}" for k in ("fac_rc", "fac_mlm", "fac_shuffled", "multitask")
                 for key, value in (("updates", 3), ("warmup", 1))]


@pytest.fixture(scope="module")
def world_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("world_study") / "out"
    assert experiment("run", WORLD_STUDY, "--out", out, *CI_OVERRIDES) == 0
    return str(out)


# ---------------------------------------------------------------------------------------------- the CI-sized study


def test_every_arm_ran_every_unit(world_study):
    runs = sorted(os.path.relpath(d, os.path.join(world_study, "runs"))
                  for d, _, files in os.walk(os.path.join(world_study, "runs")) if "metrics.json" in files)
    expected = [f"{t}/{v}/kseed{j}" for t in ("probe_train", "probe_heldout") for v in VARIANTS for j in (1, 2)]
    expected += [f"probe_train_concat/fac-rc/kseed{j}" for j in (1, 2)]
    expected += [f"neutral/{v}/kseed{j}/seed{j}" for v in VARIANTS for j in (1, 2)]  # unit j: downstream seed j
    assert runs == sorted(expected)
    # the world and its base came from the experiment's own preparation; each knowledge seed trained its own
    assert os.path.isfile(os.path.join(world_study, "prepared", "world", "base", "model.pt"))
    for name in ("fac_rc", "fac_mlm", "fac_shuffled"):
        assert all(os.path.isfile(os.path.join(world_study, "knowledge", name, f"kseed{j}", "adapter.pt")) for j in (1, 2))
    assert all(os.path.isfile(os.path.join(world_study, "knowledge", "multitask", f"kseed{j}", "base", "model.pt"))
               for j in (1, 2))
    m = load(os.path.join(world_study, "runs", "neutral", "multitask", "kseed2", "seed2", "metrics.json"))
    assert any(f"model.roberta_path={world_study}/knowledge/multitask/kseed2/base" in c for c in m["commands"])


def test_the_positive_control_comes_first(world_study):
    with open(os.path.join(world_study, "results.json"), encoding="utf-8") as f:
        text = f.read()
    results = json.loads(text)
    assert list(results)[:2] == ["experiment", "positive_control"]
    control = results["positive_control"]
    assert control["variant"] == "roberta" and isinstance(control["holds"], bool)
    assert [(c["task"], c["part"]) for c in control["criteria"]] == \
        [(t, p) for t in ("probe_train", "probe_heldout") for p in PARTS]
    rows = {(r["task"], r.get("part"), r["variant"]): r for r in results["rows"]}
    for c in control["criteria"]:
        row = rows[(c["task"], c["part"], "roberta")]
        assert c["mean"] == row["mean"] and c["chance"] == row["majority"]
        assert c["margin"] == pytest.approx(row["mean"] - row["majority"])
        low, high = c["min_over_chance"], c["max_over_chance"]
        assert c["holds"] == ((low is None or c["margin"] >= low) and (high is None or c["margin"] <= high))
    assert control["holds"] == all(c["holds"] for c in control["criteria"])
    md = open(os.path.join(world_study, "results.md"), encoding="utf-8").read()
    assert md.index("## Positive control") < md.index("## Arms") < md.index("| variant |") < md.index("## Hypotheses")
    assert md.index("| probe_train: base | ") < md.index("| variant |")  # its figures, before any arm's


def test_probe_scores_by_partition_beside_their_majority_baseline(world_study):
    results = load(os.path.join(world_study, "results.json"))
    rows = {(r["task"], r.get("part"), r["variant"]): r for r in results["rows"]}
    for task in ("probe_train", "probe_heldout"):
        for part in PARTS:
            majority = load(os.path.join(world_study, "prepared", "world", "knowledge", "probe",
                                         {"probe_train": "train_templates", "probe_heldout": "probe_templates"}[task],
                                         part, "majority.json"))["macro"]
            for v in VARIANTS:
                row = rows[(task, part, v)]
                # the unit is the knowledge seed: one probe per knowledge seed
                assert row["n"] == 2 and row["knowledge_seeds"] == [1, 2] and row["seeds"] == []
                assert row["majority"] == pytest.approx(majority)
    assert {k for k in rows if k[0] == "probe_train_concat"} == {("probe_train_concat", p, "fac-rc") for p in PARTS}
    md = open(os.path.join(world_study, "results.md"), encoding="utf-8").read()
    assert "| variant | probe_train: base | probe_train: adapter | probe_train: none | probe_heldout: base |" in md


def test_the_neutral_task_by_partition_beside_its_type_baseline(world_study):
    """The type baseline by hand: in the world each (subject type, object type) allows one relation, so the rule
    answers that relation for every pair of a type pair that has one in the file (no_relation otherwise)."""
    from data_prep.world import RELATIONS

    allowed = {(s.upper(), o.upper()): r for r, (s, o, _, _) in RELATIONS.items()}
    results = load(os.path.join(world_study, "results.json"))
    rows = {(r["task"], r.get("part"), r["variant"]): r for r in results["rows"]}
    for part in PARTS:
        records = load(os.path.join(world_study, "prepared", "world", "downstream", f"test_{part}.json"))
        present = {(r["subj_type"], r["obj_type"]) for r in records if r["relation"] != "no_relation"}
        tp = fp = fn = 0
        for r in records:
            types = (r["subj_type"], r["obj_type"])
            guess = allowed[types] if types in present else "no_relation"
            tp += guess == r["relation"] != "no_relation"
            fp += guess != "no_relation" and guess != r["relation"]
            fn += r["relation"] != "no_relation" and guess != r["relation"]
        for v in VARIANTS:
            row = rows[("neutral", part, v)]
            assert row["type_baseline"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
            # units are knowledge seeds, each the mean of its downstream seed(s)
            assert row["knowledge_seeds"] == [1, 2] and [u["seeds"] for u in row["units"]] == [[1], [2]]
    md = open(os.path.join(world_study, "results.md"), encoding="utf-8").read()
    assert "; types alone " in md and "scores 0, since TACRED's micro-F1 leaves no_relation out" in md


def test_every_hypothesis_is_one_sentence_over_knowledge_seeds(world_study, capsys):
    with open(WORLD_STUDY, encoding="utf-8") as f:
        ids = [h["id"] for h in yaml.safe_load(f)["hypotheses"]]
    results = load(os.path.join(world_study, "results.json"))
    tested = results["hypotheses"]
    assert [h["id"] for h in tested] == ids
    rows = {(r["task"], r.get("part"), r["variant"]): r for r in results["rows"]}
    for h in tested:
        assert "n = 2" in h["statement"] and "knowledge seeds" in h["statement"]
        score = rows[(h["score"]["task"], h["score"]["part"], h["score"]["variant"])]
        if h["versus"] is None:  # against the row's own chance level
            chance = score.get("majority", score.get("type_baseline"))
            assert h["reference"] == chance and h["test"]["diff"] == pytest.approx(score["mean"] - chance)
        else:
            other = rows[(h["versus"]["task"], h["versus"]["part"], h["versus"]["variant"])]
            assert h["test"]["diff"] == pytest.approx(score["mean"] - other["mean"])
    # the printed summary: the control's figures and verdict before the arms' table, the sentences after it
    from kadapter_fairseq.experiment.cli import print_summary

    print_summary(results, world_study)
    printed = capsys.readouterr().out
    assert printed.index("positive control (roberta):") < printed.index("| variant |") < printed.index("H1a (")


def test_a_failing_control_heads_the_arms_as_uncalibrated_and_a_passing_one_does_not(world_study, capsys):
    """Re-running with other criteria redoes nothing (the criteria are not part of any command) and rewrites the
    report: a margin no P@1 can reach fails, bounds every P@1 meets hold."""
    always = [f"positive_control.criteria.{i}.{k}={v}" for i in range(4)
              for k, v in (("min_over_chance", -1.0), ("max_over_chance", 1.0))]
    impossible = [o for o in always if ".criteria.0." not in o] + ["positive_control.criteria.0.min_over_chance=1.5"]
    assert experiment("run", WORLD_STUDY, "--out", world_study, *CI_OVERRIDES, *impossible) == 0
    out = capsys.readouterr().out
    assert "[run]" not in out and "$ " not in out
    results = load(os.path.join(world_study, "results.json"))
    assert results["positive_control"]["holds"] is False
    assert [c["holds"] for c in results["positive_control"]["criteria"]][0] is False
    md = open(os.path.join(world_study, "results.md"), encoding="utf-8").read()
    assert "The positive control FAILS (1 of 6 criteria: probe_train: base)" in md
    assert "## Arms (uncalibrated: the positive control did not hold)" in md
    assert out.index("positive control (roberta): FAILS") < out.index("arms (uncalibrated") < out.index("| variant |")

    assert experiment("run", WORLD_STUDY, "--out", world_study, *CI_OVERRIDES, *always) == 0
    results = load(os.path.join(world_study, "results.json"))
    assert results["positive_control"]["holds"] is True
    md = open(os.path.join(world_study, "results.md"), encoding="utf-8").read()
    assert "**The positive control holds (all 6 criteria)" in md and "\n## Arms\n" in md
    # report rebuilds the same files from the runs
    before = open(os.path.join(world_study, "results.md"), encoding="utf-8").read()
    assert experiment("report", world_study) == 0
    assert open(os.path.join(world_study, "results.md"), encoding="utf-8").read() == before


# ---------------------------------------------------------------------------------------------- the pieces, by hand


def record(control=None, hypotheses=(), several=True):
    return SimpleNamespace(positive_control=control, hypotheses=list(hypotheses), several_knowledge_seeds=several)


def row(variant, part, values, majority=None, task="probe", **extra):
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    out = {"task": task, "part": part, "variant": variant, "size": None, "mean": mean, "std": std, "n": len(values),
           "values": list(values), **extra}
    if majority is not None:
        out["majority"] = majority
    return out


def test_control_checks_margins_over_chance_by_hand():
    from kadapter_fairseq.experiment import control
    from kadapter_fairseq.experiment.config import PositiveControlSpec

    spec = PositiveControlSpec("roberta", "knows its own", [
        {"task": "probe", "part": "base", "min_over_chance": 0.2, "max_over_chance": None},
        {"task": "probe", "part": "none", "min_over_chance": None, "max_over_chance": 0.05},
    ])
    rows = [row("roberta", "base", [0.5, 0.5], majority=0.25), row("roberta", "none", [0.28, 0.30], majority=0.25),
            row("fac", "base", [0.0, 0.0], majority=0.25)]
    result = control.check(record(spec), rows)
    assert [c["margin"] for c in result["criteria"]] == pytest.approx([0.25, 0.04])
    assert result["holds"] and [c["holds"] for c in result["criteria"]] == [True, True]
    rows[1] = row("roberta", "none", [0.30, 0.32], majority=0.25)  # margin 0.06 > 0.05
    result = control.check(record(spec), rows)
    assert not result["holds"] and [c["holds"] for c in result["criteria"]] == [True, False]
    assert "FAILS (1 of 2 criteria: probe: none)" in result["verdict"]
    md = control.markdown(result, "knowledge seeds")
    assert "| probe: none | 0.3100 ± 0.0141 (n=2) | 0.2500 (majority baseline) | +0.0600 | ≤ +0.05 | **no** |" in md
    # a criterion without a finished run is not a pass
    result = control.check(record(spec), rows[:1])
    assert result["holds"] is False and result["criteria"][1]["holds"] is None and "could not be checked" in result["verdict"]
    assert control.check(record(None), rows) is None


@pytest.mark.filterwarnings("ignore:Precision loss occurred")
def test_hypotheses_use_welch_between_rows_and_the_one_sample_test_against_chance():
    from scipy import stats as sps

    from kadapter_fairseq.experiment import hypotheses
    from kadapter_fairseq.experiment.config import HypothesisSpec

    fac = {"variant": "fac", "task": "probe", "part": "adapter"}
    rows = [row("fac", "adapter", [0.9, 0.8, 0.7], majority=0.2), row("roberta", "adapter", [0.1, 0.1, 0.1], majority=0.2),
            row("fac", "base", [0.3, 0.5, 0.4], majority=0.2)]
    specs = [HypothesisSpec("H1", "stores", fac, {**fac, "variant": "roberta"}),
             HypothesisSpec("H2", "stores", fac, None),
             HypothesisSpec("H3", "keeps", {**fac, "part": "base"}, {**fac, "part": "base", "variant": "roberta"}, "any"),
             HypothesisSpec("H4", "lower", fac, {**fac, "part": "base"}, "lower")]
    out = hypotheses.evaluate(record(hypotheses=specs), rows)
    welch = sps.ttest_ind([0.9, 0.8, 0.7], [0.1, 0.1, 0.1], equal_var=False)
    assert out[0]["test"]["p"] == pytest.approx(welch.pvalue) and out[0]["test"]["diff"] == pytest.approx(0.7)
    one = sps.ttest_1samp([0.9, 0.8, 0.7], 0.2)
    assert out[1]["test"]["p"] == pytest.approx(one.pvalue) and out[1]["reference"] == 0.2
    assert out[0]["statement"] == ("H1 (stores), expected higher: fac on probe: adapter 0.8000 ± 0.1000 vs roberta on "
                                   "probe: adapter 0.1000 ± 0.0000 (n = 3 and 3 knowledge seeds): +0.7000, Welch p = "
                                   f"{welch.pvalue:.3f}: higher, beyond the knowledge-seed spread: as expected.")
    assert "vs chance (majority baseline) 0.2000 (n = 3 knowledge seeds)" in out[1]["statement"]
    assert "one-sample t-test p" in out[1]["statement"]
    assert out[2]["statement"].endswith("no rows") is False and "H3 (keeps):" in out[2]["statement"]
    assert out[3]["statement"].endswith("the opposite of the expectation.")  # H4 expected lower, measured higher
    missing = hypotheses.evaluate(record(hypotheses=[HypothesisSpec("H5", "", {**fac, "variant": "x"}, None)]), rows)
    assert missing[0]["test"] is None and "has no finished run" in missing[0]["statement"]


def test_one_sample_test_and_its_edge_cases():
    from scipy import stats as sps

    from kadapter_fairseq.experiment import stats

    t, df, p = stats.one_sample([0.3, 0.5, 0.4], 0.2)
    ref = sps.ttest_1samp([0.3, 0.5, 0.4], 0.2)
    assert (t, df, p) == pytest.approx((ref.statistic, 2.0, ref.pvalue))
    assert stats.one_sample([0.5], 0.2) is None
    assert stats.one_sample([0.5, 0.5], 0.2) == (math.inf, 1.0, 0.0)  # no spread at all, a difference: beyond it
    assert stats.one_sample([0.2, 0.2], 0.2) == (0.0, 1.0, 1.0)
    assert stats.compare_to([0.5], 0.2)["exceeds_noise"] is None


def test_type_baseline_counts_like_the_scorer(tmp_path):
    from kadapter_fairseq.experiment.baselines import type_baseline

    def rec(rel, s="PERSON", o="CITY"):
        return {"token": ["a", "b"], "subj_start": 0, "subj_end": 0, "obj_start": 1, "obj_end": 1, "relation": rel,
                "subj_type": s, "obj_type": o}

    gold = tmp_path / "gold.json"
    # PERSON-CITY: born_in 2, lives_in 1, no_relation 2 -> guess born_in (tp 2, fp 3, fn 1);
    # COMPANY-CITY: only no_relation -> guess no_relation (nothing counted)
    gold.write_text(json.dumps([rec("born_in"), rec("born_in"), rec("lives_in"), rec("no_relation"), rec("no_relation"),
                                rec("no_relation", "COMPANY")]))
    assert type_baseline(str(gold)) == pytest.approx(2 * 2 / (2 * 2 + 3 + 1))
    gold.write_text(json.dumps([{k: v for k, v in rec("born_in").items() if k != "obj_type"}]))
    assert type_baseline(str(gold)) is None  # no types: no baseline


@pytest.mark.parametrize("override, message", [
    ("positive_control.variant=nobody", r"positive_control.criteria\[0\].variant: expected one of the experiment's variants"),
    ("positive_control.criteria.0.parts=[everything]", r"positive_control.criteria\[0\].part: expected one of "
                                                       r"tasks.probe_train's scores \(base, adapter, none\)"),
    ("positive_control.criteria.0.min_over_chance=null", r"positive_control.criteria\[0\]: give min_over_chance"),
    ("positive_control.criteria.0.max_over_chance=0.1", r"min_over_chance 0.2 is above max_over_chance 0.1"),
    ("hypotheses.0.versus=nothing", r"hypotheses\[0\].versus: expected \{variant, task, part\}"),
    ("hypotheses.0.versus={variant: fac-mlm}", r"hypotheses\[0\].versus: compares a row with itself"),
    ("hypotheses.0.versus={task: probe_train_concat, variant: roberta}",
     r"hypotheses\[0\].versus.variant: tasks.probe_train_concat does not run variant 'roberta'"),
    ("hypotheses.0.expect=bigger", r"hypotheses\[0\].expect: expected one of higher, lower, any"),
    ("hypotheses.1.id=H1a", r"hypotheses\[1\].id: 'H1a' is used twice"),
])
def test_bad_control_and_hypothesis_sections_name_the_key(override, message):
    from kadapter_fairseq.errors import ConfigError
    from kadapter_fairseq.experiment.config import load_experiment

    with pytest.raises(ConfigError, match=message):
        load_experiment(WORLD_STUDY, [override])
