"""``examples/demo.py --size ci``: the whole demo (base pre-training, then the demo experiment: data_prep,
both adapters and the multitask base, 6 variants x 2 seeds of SemEval, predict + score, reports) at a tiny
size, then a second run that reuses it."""
import json
import os
import statistics
import subprocess
import sys
import warnings

import pytest
from scipy.stats import ttest_ind

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "examples", "demo.py")


def run_demo(work_dir, *extra):
    proc = subprocess.run([sys.executable, DEMO, "--size", "ci", "--work-dir", str(work_dir), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr


VARIANTS = ["roberta", "multitask", "fac+lin", "fac", "lin", "no-knowledge"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    code, log = run_demo(work)
    assert code == 0, log[-4000:]
    return work, log


def test_demo_writes_the_six_variant_table_over_seeds(demo_run):
    work, log = demo_run
    for name in ("results.json", "results.md", "results.png"):
        assert (work / name).is_file(), name
    assert (work / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((work / "results.json").read_text())
    assert results["experiment"] == "demo"
    assert [r["variant"] for r in results["rows"]] == VARIANTS
    for row in results["rows"]:
        assert row["task"] == "semeval" and row["metric"] == "f1" and row["n"] == 2 and row["seeds"] == [1, 2]
        assert all(0.0 <= v <= 1.0 for v in row["values"])
        run = json.loads((work / "runs" / "semeval" / row["variant"] / "seed1" / "metrics.json").read_text())
        assert run["scores"]["n"] == 1000 and run["scores"]["missing"] == 0  # every SemEval test-sample example
    md = (work / "results.md").read_text()
    assert sum(line.startswith(f"| {v} |") for v in VARIANTS for line in md.splitlines()) == 6
    # the table printed at the end holds each variant's mean ± std over its seeds' scores, the control's too
    printed = {line.split("|")[1].strip(): line for line in log.splitlines() if line.startswith("| ")}
    by = {row["variant"]: row for row in results["rows"]}
    for variant, row in by.items():
        values = [json.loads((work / "runs" / "semeval" / variant / f"seed{s}" / "metrics.json").read_text())["value"]
                  for s in (1, 2)]
        assert row["values"] == values
        assert f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} (n=2)" in printed[variant]
    # said plainly, whatever the answer, with Welch's test over the seeds' scores behind it
    control = by["no-knowledge"]["values"]
    for variant in ("fac+lin", "fac", "lin"):
        values = by[variant]["values"]
        diff = statistics.mean(values) - statistics.mean(control)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = ttest_ind(values, control, equal_var=False).pvalue
        beats = "yes" if p < 0.05 and diff > 0 else "no"
        assert f"{variant} beats no-knowledge beyond seed noise on semeval: {beats} ({diff:+.4f} f1, p = {p:.3f})" in log


def test_demo_base_is_pretrained_and_unchanged_by_adapters(demo_run):
    work, log = demo_run
    check = json.loads((work / "base_check.json").read_text())
    assert check["base_unchanged_ok"] is True
    assert set(check["base_unchanged"]) == {"fac", "lin"}
    for c in check["base_unchanged"].values():
        assert c["identical"] and c["tensors"] > 10 and not c["changed"]
        # the demo runs in `precision: auto`: the invariant is stated for the dtype this machine chose
        said = "bit-identical to model.pt" if c["precision"] == "fp32" else f"equal to model.pt cast to {c['precision']}"
        assert f"all {c['tensors']} base tensors {said}" in log
    build = json.loads((work / "base" / "build.json").read_text())
    assert build["request"]["layers"] == 2 and build["request"]["updates"] == 6
    assert build["valid_loss_after"] < build["valid_loss_before"]  # trained, not random weights
    for name in ("fac", "lin"):
        assert (work / "knowledge" / name / "train" / "adapter.pt").is_file()
    assert (work / "knowledge" / "multitask" / "train" / "base" / "model.pt").is_file()


def test_demo_echoes_each_command(demo_run):
    _, log = demo_run
    echoed = [line.strip()[2:].replace("OMP_NUM_THREADS=1 ", "") for line in log.splitlines() if line.strip().startswith("$ ")]
    starts = ["kadapter-build-base", "kadapter-experiment run", "python -m data_prep.fewrel", "python -m data_prep.conllu",
              "python -m data_prep.semeval", "python -m data_prep.tacred", "kadapter-train", "kadapter-export",
              "kadapter-export --base", "kadapter-predict", "kadapter-score"]
    for start in starts:
        assert any(cmd.startswith(start) for cmd in echoed), start
    configs = " ".join(echoed)
    for name in ("relation_pretrain_cpu", "dependency_head_prediction_cpu", "multitask_cpu", "tacred_cpu"):
        assert f"--config-name {name}" in configs
    assert "model.adapter_names=''" in configs  # the roberta and multitask rows
    assert "model.roberta_path=" in configs and "knowledge/multitask/train/base" in configs


def test_second_run_reuses_everything_and_says_so(demo_run):
    work, _ = demo_run
    before = (work / "results.json").read_bytes()
    code, log = run_demo(work)
    assert code == 0, log[-4000:]
    assert "reusing the base" in log  # kadapter-build-base's own cache
    assert log.count("metrics.json exists") == 12 and "[run]" not in log
    assert log.count("done by an earlier run") >= 7  # data, knowledge adapters, multitask base
    assert (work / "results.json").read_bytes() == before


def test_build_base_reuses_only_an_identical_request(tmp_path):
    from kadapter_fairseq.tools.build_base import BUILD_FILE, build_parser, cached_build, make_request

    text = tmp_path / "text.txt"
    text.write_text("Marie Curie was born in Warsaw .\n")
    out = tmp_path / "base"
    out.mkdir()
    args = build_parser().parse_args(["--text", str(text), "--out", str(out), "--updates", "10"])
    request = make_request(args)
    assert request["warmup"] == 1 and request["updates"] == 10
    (out / BUILD_FILE).write_text(json.dumps({"request": request}))
    assert cached_build(str(out), request) is None  # model.pt, dict.txt, sentencepiece model missing
    for name in ("model.pt", "dict.txt", "sentencepiece.bpe.model"):
        (out / name).write_text("x")
    assert cached_build(str(out), request)["request"] == request
    copy = tmp_path / "copy.txt"
    copy.write_text(text.read_text())
    assert make_request(build_parser().parse_args(["--text", str(copy), "--out", str(out), "--updates", "10"])) == request
    text.write_text("Marie Curie was born in Paris .\n")  # other contents: rebuild
    assert cached_build(str(out), make_request(args)) is None
    assert cached_build(str(out), dict(request, layers=6)) is None


def test_build_base_rejects_bad_requests(tmp_path):
    from kadapter_fairseq.errors import KAdapterError
    from kadapter_fairseq.tools.build_base import build_parser, make_request

    with pytest.raises(KAdapterError, match="text file not found: .*missing.txt"):
        make_request(build_parser().parse_args(["--text", str(tmp_path / "missing.txt"), "--out", str(tmp_path)]))
    text = tmp_path / "t.txt"
    text.write_text("a b c\n")
    with pytest.raises(KAdapterError, match="multiple of --heads"):
        make_request(build_parser().parse_args(["--text", str(text), "--out", str(tmp_path), "--dim", "30", "--heads", "4"]))
