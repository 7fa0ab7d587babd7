"""span_qa: answer location, pair encoding, best-span choice, converters, and a CPU training run."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from kadapter_fairseq.data.encoding import IGNORE_INDEX
from kadapter_fairseq.errors import DataError
from kadapter_fairseq.scoring.qa import read_span_qa, score_span_qa
from kadapter_fairseq.tasks.span_qa import best_span, decode_span, encode_pair, find_answer, pick_answer

from conftest import REPO, shared_data

FIXTURES = os.path.join(REPO, "tests", "fixtures", "qa")
QUASAR = {
    "train": [os.path.join(FIXTURES, "quasar_train_questions.jsonl"), os.path.join(FIXTURES, "quasar_train_contexts.jsonl")],
    "valid": [os.path.join(FIXTURES, "quasar_dev_questions.jsonl"), os.path.join(FIXTURES, "quasar_dev_contexts.jsonl")],
}


class WhitespaceBPE:
    """One piece per whitespace word: positions can be worked out by hand."""

    def encode(self, text):
        return " ".join(text.split())


def test_find_answer_normalised_first_occurrence():
    words = "Yes , (Lou) Gehrig. played ; Lou Gehrig again".split()
    assert find_answer(words, ["Lou Gehrig"]) == (2, 3)  # punctuation around words is ignored
    assert find_answer("the Mystery Train , a song".split(), ['the "Mystery Train"']) == (1, 2)
    assert find_answer("tried & treed.".split(), ["tried & treed"]) == (0, 2)
    assert find_answer("a start".split(), ["art"]) is None  # no match inside a word
    # the earliest occurrence over all answers wins
    assert find_answer("x Hawaii y Honolulu".split(), ["Honolulu", "Hawaii"]) == (1, 1)


def test_encode_pair_positions_offsets_and_window():
    bpe = WhitespaceBPE()
    # <s> who won ? </s> Marie Curie won the prize </s>
    pair = encode_pair(bpe, "who won ?", "Marie  Curie won the prize", ["Marie Curie"], max_len=64, max_question_len=10, keep_answer=True)
    assert pair.pieces == ["who", "won", "?", "</s>", "Marie", "Curie", "won", "the", "prize"]
    assert pair.offset == 5 and pair.positions == (5, 6) and not pair.truncated
    assert decode_span("Marie  Curie won the prize", pair.spans, pair.offset, 5, 6) == "Marie  Curie"
    paragraph = " ".join(f"w{i}" for i in range(20)) + " answer here"
    # budget = 12 - 1 question piece - 3 = 8 paragraph pieces
    train = encode_pair(bpe, "q", paragraph, ["answer here"], max_len=12, max_question_len=10, keep_answer=True)
    assert train.truncated and len(train.pieces) == 1 + 1 + 8
    assert train.pieces[train.positions[0] - 1 : train.positions[1]] == ["answer", "here"]
    evaluation = encode_pair(bpe, "q", paragraph, ["answer here"], max_len=12, max_question_len=10, keep_answer=False)
    assert evaluation.pieces[2:] == [f"w{i}" for i in range(8)]
    assert evaluation.positions == (IGNORE_INDEX, IGNORE_INDEX) and evaluation.has_answer


def test_best_span_respects_order_length_and_paragraph():
    start = torch.tensor([9.0, 0.0, 1.0, 0.0, 5.0, 0.0])
    end = torch.tensor([9.0, 0.0, 4.0, 3.0, 0.0, 0.0])
    # positions 0-1 are outside the paragraph (offset 2); end must not precede start
    assert best_span(start, end, offset=2, length=4, max_answer_len=10) == (pytest.approx(5.0), 2, 2)
    start2 = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    end2 = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 6.0])
    assert best_span(start2, end2, offset=2, length=4, max_answer_len=10)[1:] == (2, 5)
    assert best_span(start2, end2, offset=2, length=4, max_answer_len=2)[1:] != (2, 5)


def test_pick_answer_takes_best_paragraph():
    p0, p1 = "alpha beta", "gamma delta"
    spans = [(0, 5), (6, 10)], [(0, 5), (6, 11)]
    starts = [torch.tensor([0.0, 0.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 0.0, 3.0])]
    ends = [torch.tensor([0.0, 0.0, 0.0, 1.0]), torch.tensor([0.0, 0.0, 0.0, 3.0])]
    pairs = [(0, p0, 2, spans[0]), (1, p1, 2, spans[1])]
    assert pick_answer(starts, ends, pairs, 5) == "delta"
    assert pick_answer(starts, ends, [], 5) == ""


def test_span_qa_layout_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": 1, "question": "q", "paragraphs": ["p"], "answers": ["a"]}\n{"id": 2, "paragraphs": []}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: missing question"):
        list(read_span_qa(path))


def test_quasar_layout_counts(tmp_path, capsys):
    from data_prep.quasar import main

    out = str(tmp_path / "layout")
    assert main(["--valid", *QUASAR["valid"], "--out", out, "--layout-only"]) == 0
    printed = capsys.readouterr().out
    assert "questions without a contexts line (kept, score 0): 1" in printed
    assert "contexts lines for unknown uids (ignored): 1" in printed
    records = list(read_span_qa(os.path.join(out, "valid.jsonl")))
    assert [r.id for r in records] == ["s1q1", "s1q2", "s1q3", "s1q4", "s1q5"]
    assert records[0].paragraphs[1].startswith("Barack Obama") and records[0].answers == ["Barack Obama"]
    assert records[4].paragraphs == []


def test_quasar_missing_answer_names_file_and_line(tmp_path):
    from data_prep.quasar import read_quasar

    questions = tmp_path / "q.jsonl"
    questions.write_text('{"uid": "a", "question": "q?", "answer": "x"}\n{"uid": "b", "question": "q?"}\n')
    contexts = tmp_path / "c.jsonl"
    contexts.write_text('{"uid": "a", "contexts": [[1.0, "x y"]]}\n')
    from collections import Counter

    with pytest.raises(DataError, match=r"q.jsonl:2: missing answer"):
        read_quasar(str(questions), str(contexts), Counter())


def test_searchqa_real_sample_layout(tmp_path):
    from data_prep.searchqa import main

    root = shared_data("searchqa", "train_test_val")
    out = str(tmp_path / "sq")
    assert main(["--valid", os.path.join(root, "val"), "--out", out, "--layout-only"]) == 0
    records = {r.id: r for r in read_span_qa(os.path.join(out, "valid.jsonl"))}
    assert set(records) == {"528", "1506"}
    assert records["528"].answers == ["tried & treed"] and len(records["528"].paragraphs) == 3
    words = records["528"].paragraphs[2].split()
    first, last = find_answer(words, records["528"].answers)
    assert " ".join(words[first : last + 1]) == "tried & treed."


# --------------------------------------------------------------------------- end to end on CPU


def run(args, **kw):
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def quasar_run(tiny_base, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quasar")
    data, ckpt = str(tmp / "bin"), str(tmp / "ckpt")
    convert = run([sys.executable, "-m", "data_prep.quasar", "--train", *QUASAR["train"], "--valid", *QUASAR["valid"],
                   "--roberta-dir", tiny_base, "--out", data, "--max-len", "96", "--max-question-len", "24"])
    train = run([os.path.join(os.path.dirname(sys.executable), "fairseq-hydra-train"), "--config-dir", "configs",
                 "--config-name", "span_qa_cpu", f"task.data={data}", f"model.roberta_path={tiny_base}",
                 f"checkpoint.save_dir={ckpt}", "optimization.max_update=3", "optimization.max_epoch=2"])
    return {"data": data, "ckpt": ckpt, "convert": convert, "train": train, "tmp": tmp}


def test_quasar_converter_counts_skips_and_keeps_unanswerable_for_evaluation(quasar_run):
    prep = json.load(open(os.path.join(quasar_run["data"], "prep.json")))
    train, valid = prep["splits"]["train"], prep["splits"]["valid"]
    assert train["kept"] == 7 and train["skipped"] == {"no paragraph contains an answer": 1}
    assert valid["kept"] == 5 and valid["skipped"] == {}
    assert valid["stats"]["questions with no answer in their paragraphs (kept for evaluation)"] == 2
    assert prep["max_len"] == 96
    positions = open(os.path.join(quasar_run["data"], "train.positions")).read().split("\n")[:-1]
    assert len(positions) == 7 and all(int(p.split()[0]) > 0 for p in positions)  # every training pair has an answer


def test_quasar_trains_evaluates_predicts_and_scores(quasar_run):
    log = quasar_run["train"]
    assert re.search(r"num_updates=3", log)
    valid = re.findall(r"valid on 'valid' subset \| loss [\d.]+ \| exact_match ([\d.]+) \| f1 ([\d.]+)", log)
    assert valid, log[-2000:]
    gold = os.path.join(quasar_run["data"], "valid.jsonl")
    pred = str(quasar_run["tmp"] / "pred.jsonl")
    run([sys.executable, "-m", "kadapter_fairseq.predict", "--task", "span_qa", "--checkpoint",
         os.path.join(quasar_run["ckpt"], "checkpoint_last.pt"), "--data-dir", quasar_run["data"],
         "--input", gold, "--output", pred])
    preds = [json.loads(line) for line in open(pred)]
    assert [p["id"] for p in preds] == ["s1q1", "s1q2", "s1q3", "s1q4", "s1q5"]
    assert preds[-1]["answer"] == ""  # no paragraphs
    for p, rec in zip(preds[:-1], read_span_qa(gold)):
        # every answer is a span of one of the question's paragraphs
        assert p["answer"] and any(p["answer"] in para for para in rec.paragraphs)
    result = score_span_qa(gold, pred)
    assert result["n"] == 5 and result["missing"] == 0 and 0.0 <= result["exact_match"] <= result["f1"] <= 1.0
