"""CosmosQA: choice encoding and truncation, bad records, and CPU training on the real sample."""
import csv
import json
import os
import re
import subprocess
import sys
from collections import Counter

import pytest

from data_prep.common import SkipCounter
from data_prep.cosmosqa import read_split
from kadapter_fairseq.errors import DataError
from kadapter_fairseq.scoring.qa import CosmosQARecord, score_cosmosqa
from kadapter_fairseq.tasks.cosmosqa import encode_choices

from conftest import REPO, shared_data

HEADER = "id,context,question,answer0,answer1,answer2,answer3,label\n"


class WhitespaceBPE:
    def encode(self, text):
        return " ".join(text.split())


def record(context, question="why ?", answers=("a", "b c", "d", "e"), label=1):
    return CosmosQARecord(line=2, id="x", context=context, question=question, answers=list(answers), label=label)


def test_encode_choices_layout():
    lines, truncated = encode_choices(WhitespaceBPE(), record("it rained"), max_len=32)
    assert lines[1] == "it rained </s> why ? </s> b c" and not truncated
    assert len(lines) == 4


def test_encode_choices_truncates_context_from_its_end():
    ctx = " ".join(f"c{i}" for i in range(20))
    # max_len 12: <s> + 3 separators/eos leave 8 pieces; question 2 + answer "b c" 2 -> context keeps 4
    lines, truncated = encode_choices(WhitespaceBPE(), record(ctx), max_len=12)
    assert truncated
    assert lines[1].split() == ["c0", "c1", "c2", "c3", "</s>", "why", "?", "</s>", "b", "c"]
    assert all(len(line.split()) + 2 <= 12 for line in lines)


def test_bad_record_is_an_error_or_a_counted_skip(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(HEADER + "a,ctx,q?,w,x,y,z,2\nb,ctx,q?,w,,y,z,0\nc,ctx,q?,w,x,y,z,\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train.csv:3: missing answer1"):
        read_split(str(path), "train", "error", SkipCounter())
    counter = SkipCounter()
    kept = read_split(str(path), "train", "skip", counter)
    assert [r.id for r in kept] == ["a"]
    assert counter.skipped == Counter({"missing answer1": 1, "missing label": 1})
    assert counter.examples["missing answer1"] == [f"{path}:3"]
    # test data may come without labels, but not with some missing
    unlabelled = tmp_path / "test.csv"
    unlabelled.write_text(HEADER + "a,ctx,q?,w,x,y,z,\nb,ctx,q?,w,x,y,z,\n", encoding="utf-8")
    assert [r.label for r in read_split(str(unlabelled), "test", "error", SkipCounter())] == [None, None]
    unlabelled.write_text(HEADER + "a,ctx,q?,w,x,y,z,\nb,ctx,q?,w,x,y,z,1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"test.csv:2: missing label"):
        read_split(str(unlabelled), "test", "error", SkipCounter())


# --------------------------------------------------------------------------- end to end on CPU


def run(args):
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def train(data, base, ckpt, *overrides):
    return run([os.path.join(os.path.dirname(sys.executable), "fairseq-hydra-train"), "--config-dir", "configs",
                "--config-name", "cosmosqa_cpu", f"task.data={data}", f"model.roberta_path={base}",
                f"checkpoint.save_dir={ckpt}", *overrides])


@pytest.fixture(scope="module")
def cosmos_run(tiny_base, tmp_path_factory):
    train_csv = shared_data("cosmosqa", "train_sample.csv")
    valid_full = shared_data("cosmosqa", "valid.csv")
    tmp = tmp_path_factory.mktemp("cosmosqa")
    valid_csv = str(tmp / "valid12.csv")
    with open(valid_full, newline="", encoding="utf-8") as f, open(valid_csv, "w", newline="", encoding="utf-8") as g:
        rows = list(csv.reader(f))[:13]
        csv.writer(g).writerows(rows)
    data, ckpt = str(tmp / "bin"), str(tmp / "ckpt")
    convert = run([sys.executable, "-m", "data_prep.cosmosqa", "--train", train_csv, "--valid", valid_csv,
                   "--roberta-dir", tiny_base, "--out", data, "--max-len", "96"])
    log = train(data, tiny_base, ckpt, "optimization.max_update=3")
    return {"data": data, "ckpt": ckpt, "valid": valid_csv, "convert": convert, "train": log, "tmp": tmp, "base": tiny_base}


def test_converter_writes_four_choices_and_reports_truncation(cosmos_run):
    data = cosmos_run["data"]
    for k in range(4):
        assert os.path.isfile(os.path.join(data, f"input{k}", "valid.bin"))
    labels = open(os.path.join(data, "train.label")).read().split()
    assert labels[0] == "1" and len(labels) == 10
    prep = json.load(open(os.path.join(data, "prep.json")))
    assert prep["splits"]["valid"]["kept"] == 12 and prep["max_len"] == 96
    assert "truncated to 96 positions" in cosmos_run["convert"]
    assert prep["splits"]["train"]["truncated"] == 10  # the tiny vocabulary splits text into many pieces


def test_training_metric_equals_scorer_on_predictions(cosmos_run):
    log = cosmos_run["train"]
    assert "num_updates=3" in log
    accuracy = re.findall(r"valid on 'valid' subset \| loss [\d.]+ \| accuracy ([\d.]+)", log)
    assert accuracy, log[-2000:]
    pred = str(cosmos_run["tmp"] / "pred.jsonl")
    run([sys.executable, "-m", "kadapter_fairseq.predict", "--task", "cosmosqa", "--checkpoint",
         os.path.join(cosmos_run["ckpt"], "checkpoint_last.pt"), "--data-dir", cosmos_run["data"],
         "--input", cosmos_run["valid"], "--output", pred])
    preds = [json.loads(line) for line in open(pred)]
    assert len(preds) == 12 and all(p["label"] in (0, 1, 2, 3) for p in preds)
    result = score_cosmosqa(cosmos_run["valid"], pred)
    assert result["n"] == 12 and result["missing"] == 0
    # the criterion and the scorer share the metric code and see the same sequences
    assert result["accuracy"] == pytest.approx(float(accuracy[-1]), abs=1e-4)


@pytest.mark.parametrize("overrides", [{"adapter_names": ""}, {"train_phase": "efficient"}])
def test_other_finetuning_modes_build_and_learn(cosmos_run, overrides):
    """Plain RoBERTa and the parameter-efficient mode: task, head and criterion work in-process."""
    from fairseq import tasks

    from kadapter_fairseq.criterions.cosmosqa import CosmosQACriterion
    from kadapter_fairseq.fairseq_compat import compose_train_config

    # configs/cosmosqa_cpu.yaml inherits from cosmosqa.yaml: compose it, as training does
    cfg = compose_train_config(os.path.join(REPO, "configs"), "cosmosqa_cpu",
                               [f"task.data={cosmos_run['data']}", f"model.roberta_path={cosmos_run['base']}"])
    cfg.task.seed = 1
    for key, value in overrides.items():
        cfg.model[key] = value
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    task.load_dataset("train")
    sample = task.dataset("train").collater([task.dataset("train")[i] for i in range(4)])
    criterion = CosmosQACriterion(task)
    model.train()
    loss, size, log = criterion(model, sample)
    loss.backward()
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert size == 4 and log["ncorrect"] <= 4 and loss.item() > 0
    assert any(n.startswith("heads.cosmosqa") for n in trained)
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith("heads.cosmosqa"))
    if overrides.get("train_phase") == "efficient":
        assert not any(n.startswith("encoder.") for n in trained)
