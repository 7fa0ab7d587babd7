"""``examples/demo.py --size ci``: the whole pipeline (base pre-training, data_prep, both adapters,
four fine-tuning runs, predict + score, reports) at a tiny size, then a second run that reuses it."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "examples", "demo.py")


def run_demo(work_dir, *extra):
    proc = subprocess.run([sys.executable, DEMO, "--size", "ci", "--work-dir", str(work_dir), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    code, log = run_demo(work)
    assert code == 0, log[-4000:]
    return work, log


def test_demo_writes_results_for_four_runs(demo_run):
    work, log = demo_run
    for name in ("results.json", "results.md", "training_curves.png"):
        assert (work / name).is_file(), name
    assert (work / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((work / "results.json").read_text())
    assert [r["run"] for r in results["runs"]] == ["base", "fac", "lin", "fac+lin"]
    assert [r["adapters"] for r in results["runs"]] == [[], ["fac"], ["lin"], ["fac", "lin"]]
    for row in results["runs"]:
        for key in ("precision", "recall", "f1"):
            assert isinstance(row[key], float) and 0.0 <= row[key] <= 1.0, row
        assert row["n"] == 1000 and row["missing"] == 0  # every SemEval test-sample example was predicted
    md = (work / "results.md").read_text()
    assert sum(line.startswith("| ") for line in md.splitlines()) == 5  # header + 4 runs


def test_demo_base_is_pretrained_and_unchanged_by_adapters(demo_run):
    work, log = demo_run
    results = json.loads((work / "results.json").read_text())
    assert results["base_unchanged_ok"] is True
    assert set(results["base_unchanged"]) == {"fac", "lin"}
    for check in results["base_unchanged"].values():
        assert check["identical"] and check["tensors"] > 10 and not check["changed"]
    assert "bit-identical to model.pt" in log
    build = json.loads((work / "base" / "build.json").read_text())
    assert build["request"]["layers"] == 2 and build["request"]["updates"] == 6
    assert build["valid_loss_after"] < build["valid_loss_before"]  # trained, not random weights
    assert (work / "adapters" / "fac.pt").is_file() and (work / "adapters" / "lin.pt").is_file()


def test_demo_echoes_each_command(demo_run):
    _, log = demo_run
    echoed = [line.strip()[2:] for line in log.splitlines() if line.strip().startswith("$ ")]
    starts = [("kadapter-build-base", "python -m kadapter_fairseq.tools.build_base"), ("python -m data_prep.fewrel",),
              ("python -m data_prep.conllu",), ("python -m data_prep.semeval",), ("python -m data_prep.tacred",),
              ("kadapter-train", "python -m kadapter_fairseq.tools.train"), ("kadapter-export", "python -m kadapter_fairseq.tools.export"),
              ("kadapter-predict", "python -m kadapter_fairseq.predict"), ("kadapter-score", "python -m kadapter_fairseq.scoring.cli")]
    for forms in starts:
        assert any(cmd.startswith(forms) for cmd in echoed), forms
    configs = " ".join(echoed)
    for name in ("relation_pretrain_cpu", "dependency_head_prediction_cpu", "tacred_cpu"):
        assert f"--config-name {name}" in configs
    assert "model.adapter_names=''" in configs  # the base-only run


def test_second_run_reuses_everything_and_says_so(demo_run):
    work, _ = demo_run
    before = json.loads((work / "results.json").read_text())
    code, log = run_demo(work)
    assert code == 0, log[-4000:]
    assert "holds an earlier run" in log
    assert "reusing the base" in log  # kadapter-build-base's own cache
    assert log.count("[reuse]") >= 20
    after = json.loads((work / "results.json").read_text())
    assert after["steps_run"] == ["base"]  # only the (cached) base check ran again
    assert [r["f1"] for r in after["runs"]] == [r["f1"] for r in before["runs"]]


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
