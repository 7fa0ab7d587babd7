"""kadapter-experiment: a CI-sized grid end to end (tiny base, 2 variants x 2 seeds, a few updates),
resume after SIGKILL, report rebuilding, config validation, the joblib and submitit launchers,
in-process vs CLI execution, and the seed statistics."""
import glob
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings

import pytest

from conftest import REPO, experiment, load_json

CI = os.path.join(REPO, "tests", "fixtures", "experiments", "ci.yaml")
RESULT_FILES = ("results.json", "results.md", "results.png")
RUNS = ["tacred/lin/seed1", "tacred/lin/seed2", "tacred/no-knowledge/seed1", "tacred/no-knowledge/seed2"]


def metrics(out, run):
    return load_json(os.path.join(out, "runs", run, "metrics.json"))


def read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def ci_run(tiny_base, tmp_path_factory):
    out = tmp_path_factory.mktemp("experiment") / "ci"
    assert experiment("run", CI, "--out", out, f"base.roberta_path={tiny_base}") == 0
    return str(out)


# ---------------------------------------------------------------------------------------------- the grid


def test_ci_grid_writes_every_run_and_the_results(ci_run):
    for run in RUNS:
        d = os.path.join(ci_run, "runs", run)
        for name in ("config.yaml", "metrics.json", "test_predictions.jsonl", "train.log"):
            assert os.path.isfile(os.path.join(d, name)), (run, name)
        assert not os.path.exists(os.path.join(d, "checkpoints"))  # keep_checkpoints: false
        with open(os.path.join(d, "test_predictions.jsonl"), encoding="utf-8") as f:
            assert len(f.readlines()) == 6  # one prediction per test record
    assert os.path.isfile(os.path.join(ci_run, "knowledge", "lin", "train", "adapter.pt"))
    results = json.loads(read(os.path.join(ci_run, "results.json")))
    assert results["experiment"] == "ci"
    assert [(r["task"], r["variant"]) for r in results["rows"]] == [("tacred", "lin"), ("tacred", "no-knowledge")]
    for row in results["rows"]:
        values = [metrics(ci_run, f"tacred/{row['variant']}/seed{s}")["value"] for s in (1, 2)]
        assert row["values"] == values and row["seeds"] == [1, 2] and row["n"] == 2
        assert row["metric"] == "f1" and row["fraction"] == 1.0
        assert row["mean"] == pytest.approx(sum(values) / 2)
        assert row["std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))  # sample std of two values
    assert read(os.path.join(ci_run, "results.png"))[:8] == b"\x89PNG\r\n\x1a\n"
    md = read(os.path.join(ci_run, "results.md")).decode()
    assert "| lin |" in md and "| no-knowledge |" in md and "**" in md
    assert "lin beats no-knowledge beyond seed noise on tacred:" in md
    assert "Welch" in md


def test_metrics_hold_the_scores_the_best_validation_and_the_commands(ci_run):
    m = metrics(ci_run, "tacred/lin/seed1")
    assert m["value"] == m["scores"]["f1"] and m["scores"]["n"] == 6 and m["scores"]["missing"] == 0
    assert m["best_valid"]["metric"] == "f1" and m["best_valid"]["update"] in (2, 4)
    # read from checkpoint_best.pt's own record; it is the validation fairseq logged as best (the last
    # one at least as good as every one before it)
    logged = [json.loads(line.split("| valid | ", 1)[1]) for line in
              read(os.path.join(ci_run, "runs", "tacred", "lin", "seed1", "train.log")).decode().splitlines()
              if "| valid | {" in line]
    assert len(logged) == 2
    best = None
    for rec in logged:
        if best is None or float(rec["valid_f1"]) >= float(best["valid_f1"]):
            best = rec
    assert m["best_valid"] == {"metric": "f1", "value": float(best["valid_f1"]), "update": int(best["valid_num_updates"])}
    for prov in (m["provenance"], json.loads(read(os.path.join(ci_run, "results.json")))["provenance"]):
        assert prov["dtype"] == "fp32" and prov["threads"] == 1 and prov["torch"] and prov["fairseq"]
        assert prov["device"]["type"] == "cpu"
    train, predict, score = m["commands"]
    # the thread count is part of each computing command: other counts give other floats
    assert train.startswith("OMP_NUM_THREADS=1 kadapter-train --config-dir configs --config-name tacred_cpu ")
    assert "\"model.adapter_names='lin'\"" in train and "common.seed=1" in train and "model.train_phase=efficient" in train
    assert predict.startswith("OMP_NUM_THREADS=1 kadapter-predict --task tacred --checkpoint ")
    assert "checkpoint_best.pt" in predict
    assert score.startswith("kadapter-score --task tacred --gold ")
    control = metrics(ci_run, "tacred/no-knowledge/seed1")["commands"][0]
    assert "\"model.adapter_names='fac,lin'\"" in control and "\"++model.adapter_paths=''\"" in control


def test_a_second_run_skips_everything_and_changes_nothing(ci_run, tiny_base, capsys):
    before = {name: read(os.path.join(ci_run, name)) for name in RESULT_FILES}
    assert experiment("run", CI, "--out", ci_run, f"base.roberta_path={tiny_base}") == 0
    out = capsys.readouterr().out
    assert out.count("metrics.json exists") == 4 and "[run]" not in out
    assert "[skip] knowledge lin: adapter" in out
    assert {name: read(os.path.join(ci_run, name)) for name in RESULT_FILES} == before


def test_report_rebuilds_the_three_files(ci_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(ci_run, copy)
    for name in RESULT_FILES:
        os.remove(copy / name)
    assert experiment("report", copy) == 0
    for name in RESULT_FILES:
        assert read(copy / name) == read(os.path.join(ci_run, name)), name


def test_killed_experiment_finishes_only_the_missing_runs(ci_run, tiny_base, tmp_path, capfd):
    out = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "kadapter_fairseq.experiment.cli", "run", CI, "--out", str(out),
                             f"base.roberta_path={tiny_base}"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not glob.glob(str(out / "runs" / "**" / "metrics.json"), recursive=True):
            assert proc.poll() is None, "the experiment ended before it could be killed"
            assert time.time() < deadline, "no run finished within 5 minutes"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = [r for r in RUNS if os.path.isfile(out / "runs" / r / "metrics.json")]
    assert 1 <= len(done) < len(RUNS)
    capfd.readouterr()
    assert experiment("run", CI, "--out", out, f"base.roberta_path={tiny_base}") == 0
    log = capfd.readouterr().out
    for run in RUNS:
        assert (f"[skip] {run}: metrics.json exists" in log) == (run in done), run
        assert (f"[run] {run}" in log) == (run not in done), run
    for name in RESULT_FILES:  # the same files as the uninterrupted run's
        assert read(out / name) == read(os.path.join(ci_run, name)), name
    # progress: k/N of the whole plan, with the time left while runs remain
    assert f"{len(RUNS)}/{len(RUNS)} runs done" in log
    if len(RUNS) - len(done) >= 2:
        assert re.search(rf"{len(done) + 1}/{len(RUNS)} runs done, about \d+(\.\d)? (s|min) left", log)


# ---------------------------------------------------------------------------------------------- launchers


def test_joblib_launcher_runs_in_parallel_with_the_same_numbers(ci_run, tiny_base, tmp_path):
    out = tmp_path / "joblib"
    assert experiment("run", CI, "--out", out, f"base.roberta_path={tiny_base}", "variants=[no-knowledge]",
                      "hydra/launcher=joblib", "hydra.launcher.n_jobs=2") == 0
    assert os.path.isfile(out / "hydra" / "multirun.yaml")
    for seed in (1, 2):
        run = f"tacred/no-knowledge/seed{seed}"
        assert metrics(out, run)["value"] == metrics(ci_run, run)["value"]
        assert read(out / "runs" / run / "test_predictions.jsonl") == \
            read(os.path.join(ci_run, "runs", run, "test_predictions.jsonl"))


def test_submitit_local_launcher_runs_the_cli_chain(ci_run, tiny_base, tmp_path):
    """The SLURM path through submitit's local executor; ``execution=subprocess`` runs the echoed CLIs,
    which must give what the in-process run gave."""
    out = tmp_path / "submitit"
    assert experiment("run", CI, "--out", out, f"base.roberta_path={tiny_base}", "variants=[no-knowledge]", "seeds=[1]",
                      "execution=subprocess", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10") == 0
    assert glob.glob(str(out / "hydra" / ".submitit" / "*"))
    run = "tacred/no-knowledge/seed1"
    assert metrics(out, run)["value"] == metrics(ci_run, run)["value"]
    assert read(out / "runs" / run / "test_predictions.jsonl") == \
        read(os.path.join(ci_run, "runs", run, "test_predictions.jsonl"))


# ---------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("override, message", [
    ("variants=[lin,knowledge-ish]", r"variants\[1\]: unknown variant 'knowledge-ish'"),
    ("tasks.tacred.data.splits.train=tests/fixtures/downstream/absent.json",
     r"tasks\.tacred\.data\.splits\.train: path not found: tests/fixtures/downstream/absent\.json"),
    ("~tasks.tacred.score.metric", r"tasks\.tacred\.score\.metric: missing"),
    ("fractions=[0.5,1.5]", r"fractions\[1\]: a training fraction must be in \(0, 1\], got 1\.5"),
    ("fractions=[0]", r"fractions\[0\]: a training fraction must be in \(0, 1\]"),
    ("knowledge.lin.config=no_such_config", r"knowledge\.lin\.config: no config no_such_config\.yaml"),
    ("tasks.tacred.epochs=3", r"tasks\.tacred\.epochs: unknown key"),
    ("tasks.tacred.updates=many", r"tasks\.tacred\.updates: Value 'many' of type 'str' could not be converted to Integer"),
    ("tasks.tacred.overrides={a: 1}", r"tasks\.tacred\.overrides: expected a list"),
    ("knowledge_seeds=[1,2,3]", r"seeds: 2 downstream seeds cannot be shared out over 3 knowledge seeds"),
    ("controls=[nope]", r"controls\[0\]: 'nope' is not one of the experiment's variants"),
    ("precision=fp16", r"precision: expected one of fp32, bf16, auto, got 'fp16'"),
    ("+study={arms: {a: {efficient: lin}}, reference: b}", r"study\.reference: 'b' is not one of study\.arms"),
    ("+study={arms: {a: {efficient: lin}}, reference: a, hypotheses: [{arm: a, versus: z}]}",
     r"study\.hypotheses\[0\]\.versus: expected one of study\.arms"),
    ("+study={arms: {a: {finetune: roberta}}, reference: a}",
     r"study\.arms\.a\.finetune: 'roberta' is not one of the experiment's variants"),
])
def test_bad_configs_fail_before_anything_runs_naming_the_key(override, message, tiny_base, tmp_path, capsys):
    import re

    from kadapter_fairseq.errors import ConfigError
    from kadapter_fairseq.experiment.config import load_experiment

    with pytest.raises(ConfigError, match=message):
        load_experiment(CI, [f"base.roberta_path={tiny_base}", override])
    out = tmp_path / "bad"
    assert experiment("run", CI, "--out", out, f"base.roberta_path={tiny_base}", override) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("kadapter-experiment: ") and re.search(message, err)
    assert not out.exists()  # nothing was prepared or trained


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_a_grid_this_machine_cannot_train_is_checked_but_refused_before_anything_runs(tiny_base, tmp_path, capsys):
    # a GPU grid (fp16) can be planned with --check on a CPU machine; `run` refuses it before any stage
    fp16 = "tasks.tacred.overrides=['common.fp16=true']"
    assert experiment("run", CI, "--out", tmp_path / "check", "--check", f"base.roberta_path={tiny_base}", fp16) == 0
    out = capsys.readouterr().out
    assert ": valid;" in out and "note: 4 training(s) cannot run on this machine" in out and "common.fp16 needs a CUDA GPU" in out
    run_dir = tmp_path / "run"
    assert experiment("run", CI, "--out", run_dir, f"base.roberta_path={tiny_base}", fp16) == 2
    err = capsys.readouterr().err
    assert "this machine cannot run the experiment: common.fp16 needs a CUDA GPU" in err and "(4 training(s)" in err
    assert not (run_dir / "knowledge").exists() and not (run_dir / "data").exists()  # nothing was prepared or trained


def test_a_variant_without_its_knowledge_entry_is_refused(tiny_base):
    from kadapter_fairseq.errors import ConfigError
    from kadapter_fairseq.experiment.config import load_experiment

    with pytest.raises(ConfigError, match=r"variants\[0\]: variant 'fac' needs the knowledge adapter 'fac': add knowledge\.fac"):
        load_experiment(CI, [f"base.roberta_path={tiny_base}", "variants=[fac]"])


def shipped_configs():
    paths = sorted(glob.glob(os.path.join(REPO, "configs", "experiments", "*.yaml")) +
                   glob.glob(os.path.join(REPO, "examples", "experiments", "*.yaml")))
    return [p for p in paths if not os.path.basename(p).startswith("_")]  # _*.yaml are defaults-list parts


@pytest.mark.parametrize("path", shipped_configs(), ids=os.path.basename)
def test_shipped_experiment_configs_compose_and_validate(path, tiny_base, monkeypatch):
    from kadapter_fairseq.experiment.config import compose_raw, validate

    for var in ("FIGER_TOTAL_UPDATES", "SEARCHQA_TOTAL_UPDATES", "QUASART_TOTAL_UPDATES"):
        monkeypatch.setenv(var, "1000")
    raw = compose_raw(path, [])
    if "roberta_path" in raw["base"]:  # the demo's base is built by examples/demo.py, roberta.large is not here
        raw["base"]["roberta_path"] = tiny_base
    # the paper grids name data sets that users bring: everything but file existence is checked; every
    # other shipped experiment runs on files in the repository, and those must exist
    paper = os.path.basename(path).startswith("paper_")
    exp = validate(raw, source=path, check_paths=not paper)
    assert exp.tasks and exp.variants and len(exp.seeds) >= 3
    if not paper:
        made = ("{work}", "{prepared}", "{base}")  # written by a step of the experiment itself
        for task in exp.tasks.values():
            for paths in (task.data.splits.values() if task.data is not None else []):
                assert all(os.path.isfile(p) for p in paths if not any(m in p for m in made))
            scored = list(task.score.parts.values()) or [task.score.gold]
            assert scored and all(p for p in scored)
            exists = os.path.isdir if task.is_probe else os.path.isfile
            assert all(exists(p) for p in scored if not any(m in p for m in made))
    if os.path.basename(path).startswith("paper_"):
        assert [v.name for v in exp.variants] == ["roberta", "multitask", "fac+lin", "fac", "lin", "no-knowledge"]
        assert exp.train_phase == "finetune" and set(exp.knowledge) == {"fac", "lin", "multitask"}


def test_overrides_for_the_launcher_are_kept_apart():
    from kadapter_fairseq.experiment.config import split_overrides

    assert split_overrides(["seeds=[1]", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "+x=1"]) == \
        (["seeds=[1]", "+x=1"], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])


# ---------------------------------------------------------------------------------------------- statistics


def test_seed_statistics_on_hand_computed_cases():
    from kadapter_fairseq.experiment import stats

    assert stats.sample_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx(math.sqrt(5 / 3))
    assert stats.sample_std([0.5]) is None
    # Student's t, 4 degrees of freedom: P(|T| >= 2) = 0.11612 (tables)
    assert stats.t_two_sided_p(2.0, 4) == pytest.approx(0.116117, abs=1e-6)
    assert stats.t_two_sided_p(0.0, 3) == pytest.approx(1.0)
    # Welch: means 0.11 and 0.06667, variances 1e-4 and 4.333e-4 over 3 seeds each
    t, df, p = stats.welch([0.10, 0.12, 0.11], [0.05, 0.06, 0.09])
    assert t == pytest.approx(0.043333 / math.sqrt(1e-4 / 3 + 4.3333e-4 / 3), rel=1e-4)
    assert df == pytest.approx(2.8764, abs=1e-3) and p == pytest.approx(0.0504, abs=5e-4)
    c = stats.compare([0.10, 0.12, 0.11], [0.05, 0.06, 0.09])
    assert c["exceeds_noise"] is False  # p just above 0.05: within the noise
    assert stats.compare([0.30, 0.31, 0.30], [0.10, 0.11, 0.10])["exceeds_noise"] is True
    assert stats.compare([0.3], [0.1])["exceeds_noise"] is None


def test_composing_an_experiment_leaves_fairseqs_own_config_conversion_working():
    """hydra keeps its version base process-wide; fairseq's Namespace->config conversion (used for
    argparse-era checkpoints and by kadapter-tiny-base) refuses to run once it is 1.2 or later."""
    from kadapter_fairseq.experiment.config import compose_raw
    from kadapter_fairseq.tools.tiny_base import roberta_cfg

    compose_raw(CI, [])
    cfg = roberta_cfg(layers=1, dim=8, heads=2, ffn=16, max_positions=16)
    assert cfg["model"]["encoder_layers"] == 1


# ---------------------------------------------------------------------------------------------- typed plan


def test_each_run_is_composed_once_and_travels_as_a_typed_plan(tiny_base, tmp_path, monkeypatch, capsys):
    """Planning composes each run's fairseq config once; plan.json round-trips the RunSpecs exactly; the
    in-process run trains from the planned config without composing again."""
    from kadapter_fairseq import fairseq_compat
    from kadapter_fairseq.experiment.config import load_experiment
    from kadapter_fairseq.experiment.plan import RunSpec, from_json, plan_experiment, to_json
    from kadapter_fairseq.experiment.runner import execute_run, run_stage, write_plan

    calls = []
    real = fairseq_compat.compose_train_config
    monkeypatch.setattr(fairseq_compat, "compose_train_config", lambda *a, **k: calls.append(a) or real(*a, **k))
    exp = load_experiment(CI, [f"base.roberta_path={tiny_base}", "variants=[roberta]", "seeds=[1]"])
    out = tmp_path / "typed"
    plan = plan_experiment(exp, str(out))
    assert len(calls) == len(plan.runs) == 1
    (run,) = plan.runs
    assert from_json(RunSpec, json.loads(json.dumps(to_json(run)))) == run
    assert run.train.config["common"]["seed"] == 1 and run.train.config["task"]["data"].endswith("data/tacred/full")
    assert run.commands()[0] == run.train.command().shown() and run.parts[0].predict.cpu  # the composed config trains on CPU
    for stage in plan.data:
        run_stage(stage, inprocess=True)
    from kadapter_fairseq.experiment.layout import Layout

    write_plan(plan, Layout(str(out)))
    metrics = execute_run(run)
    assert len(calls) == 1  # trained from the planned config: no second composition
    assert metrics["commands"] == run.commands() and metrics["upstream"] == run.upstream
    assert "[run] tacred/roberta/seed1" in capsys.readouterr().out


def test_precision_bf16_reaches_every_training_and_prediction(tiny_base, tmp_path):
    from kadapter_fairseq.experiment.config import load_experiment
    from kadapter_fairseq.experiment.plan import plan_experiment

    exp = load_experiment(CI, [f"base.roberta_path={tiny_base}", "precision=bf16"])
    assert (exp.dtype, exp.dtype_reason) == ("bf16", "asked for")
    plan = plan_experiment(exp, str(tmp_path / "bf16"))
    trains = [s for stage in plan.knowledge for s in stage.steps if hasattr(s, "config")] + [r.train for r in plan.runs]
    assert len(trains) == 5
    for train in trains:
        assert "common.bf16=true" in train.overrides and train.config["common"]["bf16"] is True
        assert "common.bf16=true" in train.command().shown()
    for run in plan.runs:
        assert run.parts[0].predict.command().args[-1] == "--bf16" and run.dtype == "bf16"
    fp32 = plan_experiment(load_experiment(CI, [f"base.roberta_path={tiny_base}"]), str(tmp_path / "fp32"))
    for run in fp32.runs:  # fp32 commands stay as they always were
        assert "common.bf16" not in run.commands()[0] and "--bf16" not in run.commands()[1]
        assert run.train.config["common"]["bf16"] is False
    auto = load_experiment(CI, [f"base.roberta_path={tiny_base}", "precision=auto"])  # this machine decides
    assert auto.dtype in ("fp32", "bf16") and auto.dtype_reason != "asked for"


def test_knowledge_seed_conflicts_with_an_entrys_own_seed(tiny_base):
    from kadapter_fairseq.errors import ConfigError
    from kadapter_fairseq.experiment.config import load_experiment

    with pytest.raises(ConfigError, match=r"knowledge\.lin\.seed: give either knowledge_seeds"):
        load_experiment(CI, [f"base.roberta_path={tiny_base}", "knowledge_seeds=[1,2]", "knowledge.lin.seed=3"])
    exp = load_experiment(CI, [f"base.roberta_path={tiny_base}", "knowledge_seeds=3", "seeds=6"])
    assert [(u.knowledge_seed, u.seeds) for u in exp.units] == [(1, [1, 2]), (2, [3, 4]), (3, [5, 6])]
    one = load_experiment(CI, [f"base.roberta_path={tiny_base}", "knowledge_seeds=[4]"])
    assert [(u.knowledge_seed, u.seeds) for u in one.units] == [(None, [1, 2])] and one.knowledge["lin"].seed == 4


def test_knowledge_seeds_pair_units_of_downstream_seeds(tiny_base, tmp_path):
    """knowledge_seeds: [1, 2] with 4 downstream seeds: each adapter trained once per knowledge seed; unit j
    of every variant (the control too) runs the same block of downstream seeds; the table's unit is the
    knowledge seed (its score the mean over its downstream seeds) and Welch's test runs over unit scores."""
    from scipy.stats import ttest_ind

    out = tmp_path / "kseeds"
    assert experiment("run", CI, "--out", out, f"base.roberta_path={tiny_base}", "knowledge_seeds=[1,2]",
                      "seeds=[1,2,3,4]") == 0
    for j in (1, 2):
        train = out / "knowledge" / "lin" / f"kseed{j}"
        assert (train / "adapter.pt").is_file()
        assert f"common.seed={j} " in read(train / "train.log").decode().splitlines()[0]
    found = glob.glob(str(out / "runs" / "**" / "metrics.json"), recursive=True)
    runs = sorted(os.path.relpath(os.path.dirname(p), out / "runs") for p in found)
    assert runs == [f"tacred/{v}/kseed{j}/seed{s}" for v in ("lin", "no-knowledge") for j, s in
                    ((1, 1), (1, 2), (2, 3), (2, 4))]
    adapter = metrics(out, "tacred/lin/kseed2/seed3")["commands"][0]
    assert "lin=" + str(out / "knowledge" / "lin" / "kseed2" / "adapter.pt") in adapter
    results = json.loads(read(out / "results.json"))
    units = {}
    for row in results["rows"]:
        by_unit = [[metrics(out, f"tacred/{row['variant']}/kseed{j}/seed{s}")["value"] for s in seeds]
                   for j, seeds in ((1, (1, 2)), (2, (3, 4)))]
        units[row["variant"]] = [sum(v) / 2 for v in by_unit]
        assert row["knowledge_seeds"] == [1, 2] and row["n"] == 2 and row["seeds"] == [1, 2, 3, 4]
        assert row["values"] == pytest.approx(units[row["variant"]])
        assert row["units"] == [{"knowledge_seed": 1, "seeds": [1, 2], "values": by_unit[0]},
                                {"knowledge_seed": 2, "seeds": [3, 4], "values": by_unit[1]}]
    (c,) = results["comparisons"]
    if len(set(units["lin"])) > 1 or len(set(units["no-knowledge"])) > 1:
        with warnings.catch_warnings():  # scipy warns when one side's two values are equal
            warnings.simplefilter("ignore", RuntimeWarning)
            assert c["p"] == pytest.approx(ttest_ind(units["lin"], units["no-knowledge"], equal_var=False).pvalue)
    assert "per-knowledge-seed scores" in results["seed_noise_rule"]
    assert "over knowledge seeds (each the mean of its downstream seeds)" in read(out / "results.md").decode()


def test_controls_for_custom_variant_names_are_matched_by_phase(tiny_base):
    """controls: [...] names the controls; a variant is compared with those trained downstream in its phase,
    and its plain-sentence statement names the first of them."""
    from kadapter_fairseq.experiment.config import load_experiment
    from kadapter_fairseq.experiment.plan import ExperimentRecord, VariantRecord
    from kadapter_fairseq.experiment.report import make_comparisons, markdown, statements

    custom = ("+custom_variants={lin-ft: {adapters: {lin: lin}, train_phase: finetune}, "
              "lin-eff: {adapters: {lin: lin}, train_phase: efficient}, "
              "blank-ft: {adapters: {lin: random}, train_phase: finetune}, "
              "blank-eff: {adapters: {lin: random}, train_phase: efficient}, base-eff: {train_phase: efficient}}")
    names = ["lin-ft", "lin-eff", "blank-ft", "blank-eff", "base-eff"]
    exp = load_experiment(CI, [f"base.roberta_path={tiny_base}", custom, f"variants=[{','.join(names)}]",
                               "controls=[blank-ft,blank-eff,base-eff]"])
    assert exp.controls == {"lin-ft": ["blank-ft"], "lin-eff": ["blank-eff", "base-eff"]}
    standard = load_experiment(CI, [f"base.roberta_path={tiny_base}"])  # today's default: no-knowledge, roberta
    assert standard.controls == {"lin": ["no-knowledge"]}

    record = ExperimentRecord(name="x", source="x.yaml", tasks={}, variants=[VariantRecord(v.name, v.adapters, v.base,
                              exp.phase(v)) for v in exp.variants], seeds=[1, 2, 3], units=exp.units,
                              controls=exp.controls, train_phase="efficient", dtype="fp32", precision="fp32", threads=1,
                              knowledge={}, study=None, config={})
    values = {"lin-ft": [0.50, 0.52, 0.51], "lin-eff": [0.40, 0.41, 0.40], "blank-ft": [0.30, 0.31, 0.30],
              "blank-eff": [0.40, 0.42, 0.39], "base-eff": [0.20, 0.21, 0.20]}
    rows = [{"task": "t", "variant": v, "size": None, "metric": "f1", "values": x, "mean": sum(x) / 3, "std": 0.01, "n": 3}
            for v, x in values.items()]
    comparisons = make_comparisons(record, rows)
    assert [(c["variant"], c["baseline"]) for c in comparisons] == [("lin-ft", "blank-ft"), ("lin-eff", "blank-eff"),
                                                                    ("lin-eff", "base-eff")]
    said = statements(record, comparisons)
    assert said[0].startswith("lin-ft beats blank-ft beyond seed noise on t: yes (+0.2067 f1")
    assert said[1].startswith("lin-eff beats blank-eff beyond seed noise on t: no") and len(said) == 2
    md = markdown(record, rows, comparisons)
    assert "`blank-ft` has the same adapters and fusion as the adapter rows, randomly initialised" in md
    assert "`base-eff` has no adapters" in md
