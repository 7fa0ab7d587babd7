"""kadapter-experiment: a CI-sized grid end to end (tiny base, 2 variants x 2 seeds, a few updates),
resume after SIGKILL, report rebuilding, config validation, the joblib and submitit launchers,
in-process vs CLI execution, and the seed statistics."""
import glob
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CI = os.path.join(REPO, "tests", "fixtures", "experiments", "ci.yaml")
RESULT_FILES = ("results.json", "results.md", "results.png")
RUNS = ["tacred/lin/seed1", "tacred/lin/seed2", "tacred/no-knowledge/seed1", "tacred/no-knowledge/seed2"]


def experiment(*args):
    from kadapter_fairseq.experiment.cli import main

    return main([str(a) for a in args])


def metrics(out, run):
    with open(os.path.join(out, "runs", run, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)


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
    # the paper grids name data sets that are not in the repository: everything but file existence is checked
    exp = validate(raw, source=path, check_paths=os.path.basename(path) == "demo.yaml")
    assert exp.tasks and exp.variants and len(exp.seeds) >= 3
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
