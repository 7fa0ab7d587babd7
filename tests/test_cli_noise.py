"""The commands print their own output only: none of fairseq's import-time logging
(``Please install tensorboardX``, DEBUG/INFO records), no fairseq-preprocess ``Namespace(...)``
dump, and kadapter-score's JSON ends with a newline."""
import json
import os
import subprocess
import sys

from conftest import REPO

BIN = os.path.dirname(sys.executable)
NOISE = ("Please install tensorboardX", "Namespace(", "INFO", "DEBUG", "fairseq_cli.preprocess", "Warning")


def run(cmd, env=None):
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    for text in NOISE:
        assert text not in proc.stdout and text not in proc.stderr, f"{text!r} printed by {cmd[:3]}:\n{proc.stdout}{proc.stderr}"
    return proc


def tacred_json(path, n):
    labels = ["no_relation", "per:age", "org:founded"]
    records = [{"id": f"r{i}", "token": ["Obama", "was", "born", "in", "Hawaii", "."], "subj_start": 0, "subj_end": 0,
                "obj_start": 4, "obj_end": 4, "relation": labels[i % 3]} for i in range(n)]
    path.write_text(json.dumps(records))


def test_converter_prints_only_its_summary_even_without_tensorboardx(tiny_base, tmp_path):
    # tensorboardX is installed in the project's venv; hide it to show its absence stays quiet too
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text("import sys\nsys.modules['tensorboardX'] = None\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), REPO]))
    tacred_json(tmp_path / "train.json", 12)
    tacred_json(tmp_path / "valid.json", 6)
    proc = run([sys.executable, "-m", "data_prep.tacred", "--train", str(tmp_path / "train.json"), "--valid",
                str(tmp_path / "valid.json"), "--roberta-dir", tiny_base, "--out", str(tmp_path / "bin")], env=env)
    assert proc.stderr == ""
    assert proc.stdout.splitlines()[0].startswith("train (") and proc.stdout.splitlines()[-1].startswith("wrote ")
    check = [sys.executable, "-c", "import tensorboardX"]
    assert subprocess.run(check, env=env, capture_output=True).returncode != 0, "the test did not hide tensorboardX"


def test_score_prints_one_json_line(tmp_path):
    tacred_json(tmp_path / "gold.json", 6)
    with open(tmp_path / "pred.jsonl", "w", encoding="utf-8") as f:
        for i in range(6):
            f.write(json.dumps({"id": f"r{i}", "label": "per:age"}) + "\n")
    proc = run([os.path.join(BIN, "kadapter-score"), "--task", "tacred", "--gold", str(tmp_path / "gold.json"),
                "--pred", str(tmp_path / "pred.jsonl")])
    assert proc.stderr == "" and proc.stdout.endswith("}\n") and proc.stdout.count("\n") == 1
    scores = json.loads(proc.stdout)
    # 4 relation golds (r1, r2, r4, r5), 6 relation guesses, 2 correct (r1, r4)
    assert (scores["precision"], scores["recall"], scores["n"]) == (2 / 6, 2 / 4, 6)


def test_importing_the_package_leaves_logging_unconfigured():
    code = "import logging, kadapter_fairseq; r = logging.getLogger(); print(len(r.handlers), r.level)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["0", str(30)]  # no handler, WARNING: a command's own basicConfig still works
