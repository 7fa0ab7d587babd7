"""kadapter-experiment with probe tasks (kadapter-probe lama as a score, once per variant and knowledge seed,
chance beside every P@1, the delta and concat readouts, untrained adapters) and with a downstream task scored
on several gold files."""
import os
import shlex

import pytest
import torch

from conftest import REPO, experiment, load_json as load

CI_PROBE = os.path.join(REPO, "tests", "fixtures", "experiments", "ci_probe.yaml")
CI = os.path.join(REPO, "tests", "fixtures", "experiments", "ci.yaml")
# the base's text states every object of tests/fixtures/experiments/kg/triples.tsv often, so that each is one
# whole-word piece (LAMA's rule: other objects are skipped)
TEXT = [
    "Alice was born in Paris and Bob was born in Rome .",
    "Carol works for Acme and Dave works for Globex .",
    "Paris lies in France ; Rome lies in Italy ; Berlin lies in Germany .",
    "Erin was born in Berlin and Frank was born in Paris .",
    "In Rome , Erin was born . Acme has a city called Paris .",
] * 8
VARIANTS = ["roberta", "fac", "no-knowledge", "blank"]
CONCAT_VARIANTS = ["roberta", "fac", "blank"]


@pytest.fixture(scope="module")
def probe_base(tmp_path_factory):
    """A tiny base whose LM head favours "Paris" far above every other word: every query's top-1 is Paris,
    so a relation's P@1 is the share of its probed facts whose object is Paris (a hand-checkable number)."""
    from kadapter_fairseq.tools.tiny_base import make_tiny_base

    base = make_tiny_base(str(tmp_path_factory.mktemp("probe_exp_base")), texts=TEXT, seed=0)
    path = os.path.join(base, "model.pt")
    state = torch.load(path, weights_only=False)
    symbols = [line.split()[0] for line in open(os.path.join(base, "dict.txt"), encoding="utf-8")]
    state["model"]["encoder.lm_head.bias"][symbols.index("\u2581Paris") + 4] = 50.0  # 4 specials precede dict.txt
    torch.save(state, path)
    return base


@pytest.fixture(scope="module")
def probe_exp(probe_base, tmp_path_factory):
    out = tmp_path_factory.mktemp("probe_exp") / "ci_probe"
    assert experiment("run", CI_PROBE, "--out", out, f"base.roberta_path={probe_base}") == 0
    return str(out)


def metrics(out, run):
    return load(os.path.join(out, "runs", run, "metrics.json"))


def probe_command(metrics_json, index=0):
    """The echoed ``kadapter-probe lama`` arguments of a run's ``index``-th step."""
    words = shlex.split(metrics_json["commands"][index])
    assert words[:2] == ["OMP_NUM_THREADS=1", "kadapter-probe"]
    return words[2:]


# ---------------------------------------------------------------------------------------------- the grid


def test_a_probe_task_runs_once_per_variant_and_knowledge_seed(probe_exp):
    runs = sorted(os.path.relpath(os.path.join(d), os.path.join(probe_exp, "runs"))
                  for d, _, files in os.walk(os.path.join(probe_exp, "runs")) if "metrics.json" in files)
    assert runs == sorted([f"lama/{v}/kseed{j}" for v in VARIANTS for j in (1, 2)]
                          + [f"lama_concat/{v}/kseed{j}" for v in CONCAT_VARIANTS for j in (1, 2)]
                          + [f"lama_heldout/{v}/kseed{j}" for v in ("roberta", "fac") for j in (1, 2)])
    # a task's own prepare step wrote its directory into {work} = DIR/data/<task>/raw
    args = probe_command(metrics(probe_exp, "lama_heldout/fac/kseed1"))
    assert args[args.index("--data") + 1] == f"{probe_exp}/data/lama_heldout/raw/kg/probe/probe_templates/knowledge"
    m = metrics(probe_exp, "lama/fac/kseed2")
    # nothing trains or predicts: one probe per directory, reading the knowledge seed's own adapter
    assert m["best_valid"] is None and m["seed"] is None and m["knowledge_seed"] == 2 and len(m["commands"]) == 2
    args = probe_command(m)
    assert args[args.index("--adapters") + 1] == f"fac={probe_exp}/knowledge/fac/kseed2/adapter.pt"
    assert args[args.index("--data") + 1] == f"{probe_exp}/prepared/kg/probe/train_templates/knowledge"
    assert m["rank"] == "knowledge" and m["value"] == m["parts"]["knowledge"]["value"] == m["scores"]["p@1"]
    assert set(m["parts"]) == {"knowledge", "heldout"}
    assert os.path.isfile(os.path.join(probe_exp, "runs", "lama", "fac", "kseed2", "probe", "heldout", "results.json"))


def test_chance_is_beside_every_probe_score(probe_exp):
    """The majority baseline, by hand from tests/fixtures/experiments/kg/triples.tsv: partition `knowledge` has
    born_in Paris, Rome, Paris (2/3), works_for Acme, Globex, Acme (2/3), city_in France (1); `heldout` has born_in
    Paris, Berlin (1/2), city_in Italy (1). The base answers Paris to everything: P@1 is born_in's share of Paris."""
    results = load(os.path.join(probe_exp, "results.json"))
    rows = {(r["task"], r.get("part"), r["variant"]): r for r in results["rows"]}
    assert len(rows) == 2 * len(VARIANTS) + len(CONCAT_VARIANTS) + 2
    # the held-out templates probe born_in (Paris, Rome, Paris) and city_in (France) of the knowledge partition
    assert rows[("lama_heldout", None, "fac")]["majority"] == pytest.approx((2 / 3 + 1) / 2)
    for v in VARIANTS:
        assert rows[("lama", "knowledge", v)]["majority"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
        assert rows[("lama", "heldout", v)]["majority"] == pytest.approx((1 / 2 + 1) / 2)
    roberta = rows[("lama", "knowledge", "roberta")]
    assert roberta["values"] == pytest.approx([(2 / 3 + 0 + 0) / 3] * 2)
    assert rows[("lama", "heldout", "roberta")]["mean"] == pytest.approx((1 / 2 + 0) / 2)
    per_relation = metrics(probe_exp, "lama/roberta/kseed1")["parts"]["knowledge"]["scores"]["relations"]
    assert per_relation["born_in"] == {"p@1": pytest.approx(2 / 3), "majority": pytest.approx(2 / 3), "n": 3}
    # the unit is the knowledge seed: n = 2, one value per knowledge seed, as the runs recorded them
    fac = rows[("lama", "knowledge", "fac")]
    assert fac["n"] == 2 and fac["knowledge_seeds"] == [1, 2] and fac["seeds"] == []
    assert fac["values"] == [metrics(probe_exp, f"lama/fac/kseed{j}")["value"] for j in (1, 2)]
    assert ("lama_concat", None, "no-knowledge") not in rows  # not among the task's variants
    md = open(os.path.join(probe_exp, "results.md"), encoding="utf-8").read()
    assert "| variant | lama: knowledge | lama: heldout | lama_concat | lama_heldout |" in md
    assert "; chance 0.7778 |" in md and "; chance 0.7500 |" in md
    assert "fac beats no-knowledge beyond seed noise on lama: knowledge:" in md
    comparisons = {(c["task"], c.get("part"), c["variant"], c["baseline"]) for c in results["comparisons"]}
    assert ("lama", "heldout", "fac", "roberta") in comparisons and ("lama_concat", None, "fac", "roberta") in comparisons


def test_the_probe_step_gives_what_run_lama_and_the_cli_give(probe_exp, probe_base, tmp_path):
    from kadapter_fairseq.experiment.steps import probe_scores
    from kadapter_fairseq.probe import run_lama
    from kadapter_fairseq.probe.cli import main as probe_main

    m = metrics(probe_exp, "lama/fac/kseed1")
    direct = run_lama(probe_base, os.path.join(probe_exp, "prepared", "kg", "probe", "train_templates", "heldout"), "TREx",
                      adapters={"fac": os.path.join(probe_exp, "knowledge", "fac", "kseed1", "adapter.pt")})
    assert probe_scores(direct) == m["parts"]["heldout"]["scores"]
    args = probe_command(m, index=1)
    args[args.index("--out") + 1] = str(tmp_path / "cli")
    probe_main(args)
    assert probe_scores(load(tmp_path / "cli" / "results.json")) == m["parts"]["heldout"]["scores"]
    assert (tmp_path / "cli" / "predictions.jsonl").read_bytes() == \
        open(os.path.join(probe_exp, "runs", "lama", "fac", "kseed1", "probe", "heldout", "predictions.jsonl"), "rb").read()


def test_the_concat_readout_reads_the_knowledge_trainings_own_fusion(probe_exp, probe_base):
    from kadapter_fairseq.experiment.steps import probe_scores
    from kadapter_fairseq.probe import run_lama

    m = metrics(probe_exp, "lama_concat/fac/kseed1")
    args = probe_command(m)
    with_fusion = os.path.join(probe_exp, "knowledge", "fac", "with_fusion", "kseed1", "adapter.pt")
    assert args[args.index("--fusion") + 1] == "concat" and args[args.index("--adapters") + 1] == f"fac={with_fusion}"
    # exported again from the knowledge training's checkpoint, with the fusion it trained; the plain export (what
    # downstream runs load) keeps none, and the adapter weights are the same
    saved, plain = torch.load(with_fusion, weights_only=False), \
        torch.load(os.path.join(probe_exp, "knowledge", "fac", "kseed1", "adapter.pt"), weights_only=False)
    assert saved["fusion"]["mode"] == "concat" and saved["fusion"]["names"] == ["fac"] and plain["fusion"] is None
    assert any(k.startswith("proj.fac.") for k in saved["fusion"]["state_dict"])
    for key, value in plain["adapters"]["fac"]["state_dict"].items():
        assert torch.equal(value, saved["adapters"]["fac"]["state_dict"][key]), key
    direct = run_lama(probe_base, os.path.join(probe_exp, "prepared", "kg", "probe", "train_templates", "knowledge"),
                      "TREx", adapters={"fac": with_fusion}, fusion="concat")
    assert direct["model"]["fusion"] == "concat" and probe_scores(direct) == m["scores"]
    assert load(os.path.join(probe_exp, "runs", "lama_concat", "fac", "kseed1", "probe", "results.json"))["model"]["fusion"] == "concat"


def test_random_slots_are_untrained_adapters_exported_with_the_knowledge_seed(probe_exp, probe_base, tmp_path):
    from kadapter_fairseq.tools.export import main as export_main

    m = metrics(probe_exp, "lama/no-knowledge/kseed2")
    adapters = dict(a.split("=", 1) for a in probe_command(m)[probe_command(m).index("--adapters") + 1].split(","))
    assert adapters == {slot: f"{probe_exp}/random/{slot}/base/kseed2/adapter.pt" for slot in ("fac", "lin")}
    trained = torch.load(os.path.join(probe_exp, "knowledge", "fac", "kseed2", "adapter.pt"), weights_only=False)
    files = {j: torch.load(os.path.join(probe_exp, "random", "fac", "base", f"kseed{j}", "adapter.pt"), weights_only=False)
             for j in (1, 2)}
    # the architecture of the knowledge adapter it stands in for; the fusion comes along for the concat readout
    assert files[2]["adapters"]["fac"]["config"] == trained["adapters"]["fac"]["config"]
    assert files[2]["fusion"]["mode"] == "concat"
    one, two = files[1]["adapters"]["fac"]["state_dict"], files[2]["adapters"]["fac"]["state_dict"]
    assert any(not torch.equal(one[k], two[k]) for k in one)  # another knowledge seed, another draw
    # reproducible: the echoed command writes the same file again
    log = open(os.path.join(probe_exp, "random", "fac", "base", "kseed2", "export.log"), encoding="utf-8").readline()
    args = shlex.split(log[2:])[1:]
    assert args[:2] == ["--random", "fac"] and args[args.index("--seed") + 1] == "2"
    args[-1] = str(tmp_path / "again.pt")
    export_main(args)
    again = torch.load(tmp_path / "again.pt", weights_only=False)
    for key, value in two.items():
        assert torch.equal(value, again["adapters"]["fac"]["state_dict"][key]), key


def test_random_adapter_settings_follow_the_knowledge_trainings_architecture(probe_base, tmp_path):
    from kadapter_fairseq.experiment.config import load_experiment
    from kadapter_fairseq.experiment.plan import adapter_settings, plan_experiment

    assert adapter_settings({"_name": "roberta_kadapter_tiny", "adapter_down_dim": 768, "adapter_layers": 2}) == \
        ("roberta_kadapter_tiny", [])  # fields at the dataclass default take the arch's value, as the model builder does
    exp = load_experiment(CI_PROBE, [f"base.roberta_path={probe_base}", "arch_overrides=['model.adapter_down_dim=16']"])
    plan = plan_experiment(exp, str(tmp_path / "plan"))
    (stage,) = [s for s in plan.knowledge if s.title.startswith("untrained adapter fac on the base (knowledge seed 1)")]
    args = stage.steps[0].args
    assert args[args.index("--set") + 1] == "adapter_down_dim=16" and args[args.index("--seed") + 1] == "1"


def test_subprocess_execution_gives_the_same_numbers(probe_base, tmp_path):
    """``execution: subprocess`` runs the echoed ``kadapter-probe lama`` commands and reads their results.json."""
    out = tmp_path / "exec"
    overrides = [f"base.roberta_path={probe_base}", "knowledge_seeds=[1]", "seeds=[1]", "variants=[fac,blank]",
                 "tasks.lama_concat.variants=[fac]", "tasks.lama_heldout.variants=[fac]"]
    assert experiment("run", CI_PROBE, "--out", out, *overrides) == 0
    os.rename(out / "runs", out / "runs_inprocess")
    results = (out / "results.json").read_bytes()
    assert experiment("run", CI_PROBE, "--out", out, *overrides, "execution=subprocess") == 0
    for run in ("lama/fac", "lama/blank", "lama_concat/fac"):
        a, b = metrics(out, run), load(out / "runs_inprocess" / run / "metrics.json")
        assert a["commands"] == b["commands"]
        assert a.get("parts", a["scores"]) == b.get("parts", b["scores"]) and a["value"] == b["value"]
        for d, _, files in os.walk(out / "runs" / run / "probe"):
            if "predictions.jsonl" in files:
                rel = os.path.relpath(d, out / "runs")
                assert (out / "runs" / rel / "predictions.jsonl").read_bytes() == \
                    (out / "runs_inprocess" / rel / "predictions.jsonl").read_bytes()
    assert (out / "results.json").read_bytes() == results


# ---------------------------------------------------------------------------------------------- several gold files


def test_a_downstream_task_scored_on_several_gold_files(tiny_base, tmp_path):
    from kadapter_fairseq.scoring.cli import load_scorers

    out = tmp_path / "gold"
    dev, train = "tests/fixtures/downstream/tacred_dev.json", "tests/fixtures/downstream/tacred_train.json"
    assert experiment("run", CI, "--out", out, f"base.roberta_path={tiny_base}", "variants=[no-knowledge]", "seeds=[1]",
                      f"tasks.tacred.score.gold={{train: {train}, dev: {dev}}}", "tasks.tacred.score.rank=dev") == 0
    m = metrics(out, "tacred/no-knowledge/seed1")
    train_cmd, *rest = m["commands"]
    # one training, then a prediction and a score per gold file, from the same checkpoint
    assert train_cmd.startswith("OMP_NUM_THREADS=1 kadapter-train ") and len(rest) == 4
    predicts = [shlex.split(c) for c in rest[0::2]]
    assert [p[p.index("--checkpoint") + 1] for p in predicts][0] == [p[p.index("--checkpoint") + 1] for p in predicts][1]
    assert m["rank"] == "dev" and list(m["parts"]) == ["train", "dev"] and m["value"] == m["parts"]["dev"]["value"]
    scorer = load_scorers()["tacred"]
    for part, gold in (("train", train), ("dev", dev)):
        p = m["parts"][part]
        assert p["predictions"] == f"test_{part}_predictions.jsonl"
        assert p["scores"] == scorer(os.path.join(REPO, gold), str(out / "runs" / "tacred" / "no-knowledge" / "seed1" /
                                                                    p["predictions"]))
        assert p["value"] == p["scores"]["f1"]
    results = load(out / "results.json")
    assert [(r["task"], r["part"]) for r in results["rows"]] == [("tacred", "train"), ("tacred", "dev")]
    assert [r["values"] for r in results["rows"]] == [[m["parts"]["train"]["value"]], [m["parts"]["dev"]["value"]]]
    md = (out / "results.md").read_text()
    assert "| variant | tacred: train | tacred: dev |" in md and "(train, dev; dev ranks)" in md
    assert "chance" not in md  # only probes carry a majority baseline


# ---------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("override, message", [
    ("tasks.lama.config=tacred_cpu", r"tasks\.lama\.config: a probe task trains and predicts nothing"),
    ("tasks.lama.score.rank=nope", r"tasks\.lama\.score\.rank: expected one of knowledge, heldout, got 'nope'"),
    ("tasks.lama.score.metric=f1", r"tasks\.lama\.score\.metric: expected one of p@1, p@10, mrr"),
    ("tasks.lama.score.probe.fusion=add", r"tasks\.lama\.score\.probe\.fusion: expected one of delta, concat"),
    ("tasks.lama.variants=[nope]", r"tasks\.lama\.variants\[0\]: 'nope' is not one of the experiment's variants"),
    ("tasks.lama_concat.variants=[no-knowledge]",
     r"tasks\.lama_concat\.score\.probe\.fusion: the concat readout reads one adapter .* 'no-knowledge' has 2"),
    ("+tasks.lama.score.probe.dir=x", r"tasks\.lama\.score\.probe: give dirs: .* or dir: DIRECTORY"),
    ("knowledge.fac.slot=other",
     r"tasks\.lama_concat\.score\.probe\.fusion: variant 'fac' reads knowledge\.fac in slot 'fac', but it trains .* "
     r"slot 'other'"),
    ("tasks.lama.score.probe.dirs.knowledge=tests/fixtures/absent",
     r"tasks\.lama\.score\.probe\.dirs\.knowledge: dir not found: tests/fixtures/absent"),
])
def test_bad_probe_configs_name_the_key(override, message, probe_base):
    from kadapter_fairseq.errors import ConfigError
    from kadapter_fairseq.experiment.config import load_experiment

    with pytest.raises(ConfigError, match=message):
        load_experiment(CI_PROBE, [f"base.roberta_path={probe_base}", override])


def test_plan_time_refusals_for_what_a_probe_cannot_read(probe_base, tmp_path, capsys):
    # the concat readout needs the fusion a knowledge training saves: knowledge_mlm trains through delta
    assert experiment("run", CI_PROBE, "--out", tmp_path / "x", "--check", f"base.roberta_path={probe_base}",
                      "knowledge.fac.config=knowledge_mlm_cpu") == 2
    err = capsys.readouterr().err
    assert "tasks.lama_concat.score.probe.fusion: concat reads the fusion weights knowledge.fac trained, but it " \
           "trains with the 'delta' fusion" in err
    # a probe reads the base's own LM head: an entry that trains it is refused
    assert experiment("run", CI_PROBE, "--out", tmp_path / "y", "--check", f"base.roberta_path={probe_base}",
                      "knowledge.fac.config=knowledge_mlm_cpu", "tasks.lama_concat.score.probe.fusion=delta",
                      "knowledge.fac.overrides=['model.train_lm_head=true']") == 2
    assert "knowledge.fac trains the base's masked-LM head" in capsys.readouterr().err
