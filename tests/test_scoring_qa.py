"""QA metrics and the cosmosqa / span_qa scorers against hand-computed values."""
import json

import pytest

from kadapter_fairseq.errors import DataError
from kadapter_fairseq.scoring.cli import main as score_main
from kadapter_fairseq.scoring.qa import (
    exact_match,
    normalize_answer,
    qa_scores,
    read_cosmosqa,
    score_cosmosqa,
    score_span_qa,
    token_f1,
)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_normalize_drops_case_punctuation_articles_and_spaces():
    assert normalize_answer("  The  Eiffel-Tower, in PARIS! ") == "eiffeltower in paris"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_answers_differing_only_in_articles_or_punctuation_match():
    assert exact_match("the Mystery Train", '"Mystery Train"') == 1.0
    assert exact_match("(Lou) Gehrig.", "Lou Gehrig") == 1.0
    assert token_f1("A Mount Everest!", "mount everest") == 1.0
    assert exact_match("Mount Everest", "Everest") == 0.0


def test_f1_hand_computed():
    # pred tokens: mount everest nepal ; gold: everest -> common 1, P=1/3, R=1, F1=0.5
    assert token_f1("Mount Everest, Nepal", "Everest") == pytest.approx(0.5)
    # repeated tokens count once per occurrence: pred "paris paris" vs gold "paris france": common 1, P=R=1/2
    assert token_f1("Paris Paris", "Paris France") == pytest.approx(0.5)
    assert token_f1("London", "Paris") == 0.0
    assert token_f1("the", "a") == 1.0  # both normalise to nothing


def test_best_over_gold_answers_and_missing_prediction():
    assert qa_scores("Honolulu, Hawaii", ["Hawaii", "Honolulu Hawaii"]) == (1.0, 1.0)
    em, f1 = qa_scores("Honolulu", ["Hawaii", "Honolulu Hawaii"])
    assert (em, f1) == (0.0, pytest.approx(2 / 3))
    assert qa_scores(None, ["x"]) == (0.0, 0.0)


def test_span_qa_scorer(tmp_path):
    gold = write_jsonl(tmp_path / "gold.jsonl", [
        {"id": "q1", "question": "?", "paragraphs": ["p"], "answers": ["the Eiffel Tower"]},
        {"id": "q2", "question": "?", "paragraphs": [], "answers": ["Mount Everest", "Everest"]},
        {"id": 3, "question": "?", "paragraphs": ["p"], "answers": ["Paris France"]},
        {"id": "q4", "question": "?", "paragraphs": ["p"], "answers": ["Rome"]},
    ])
    pred = write_jsonl(tmp_path / "pred.jsonl", [
        {"id": "q1", "answer": "Eiffel Tower."},  # EM 1
        {"id": "q2", "answer": "Everest, Nepal"},  # EM 0, F1 vs "Everest": P=1/2, R=1 -> 2/3
        {"id": 3, "answer": "Paris"},  # EM 0, F1: P=1, R=1/2 -> 2/3
    ])  # q4 missing -> 0
    result = score_span_qa(gold, pred)
    assert result["n"] == 4 and result["missing"] == 1
    assert result["exact_match"] == pytest.approx(1 / 4)
    assert result["f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 4)


def test_span_qa_scorer_rejects_unknown_ids_and_gold_without_answers(tmp_path):
    gold = write_jsonl(tmp_path / "gold.jsonl", [{"id": "q1", "question": "?", "paragraphs": [], "answers": ["a b"]}])
    pred = write_jsonl(tmp_path / "pred.jsonl", [{"id": "q1", "answer": "x"}, {"id": "zz", "answer": "y"}])
    with pytest.raises(DataError, match=r"pred.jsonl:2: prediction for id 'zz' which is not in the gold"):
        score_span_qa(gold, pred)
    bad_gold = write_jsonl(tmp_path / "bad.jsonl", [{"id": "q1", "question": "?", "paragraphs": [], "answers": []}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: .*no gold answers"):
        score_span_qa(bad_gold, write_jsonl(tmp_path / "p2.jsonl", []))


COSMOS_HEADER = "id,context,question,answer0,answer1,answer2,answer3,label\n"


def test_cosmosqa_scorer_csv_with_multiline_record(tmp_path):
    gold = tmp_path / "gold.csv"
    gold.write_text(
        COSMOS_HEADER
        + 'a,"ctx one\nspans two lines",q?,w,x,y,z,2\n'
        + "b,ctx,q?,w,x,y,z,0\n"
        + "c,ctx,q?,w,x,y,z,3\n",
        encoding="utf-8",
    )
    pred = write_jsonl(tmp_path / "pred.jsonl", [{"id": "a", "label": 2}, {"id": "b", "label": 1}])
    assert score_cosmosqa(str(gold), pred) == {"accuracy": pytest.approx(1 / 3), "n": 3, "missing": 1}
    # the record after the two-line one starts on line 4
    assert [r.line for r in read_cosmosqa(str(gold))] == [2, 4, 5]


def test_cosmosqa_missing_answer_names_file_and_line(tmp_path):
    gold = tmp_path / "gold.csv"
    gold.write_text(COSMOS_HEADER + "a,ctx,q?,w,x,y,z,2\nb,ctx,q?,w,x,,z,0\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"gold.csv:3: missing answer2"):
        list(read_cosmosqa(str(gold)))
    jsonl = write_jsonl(tmp_path / "gold.jsonl", [
        {"id": "a", "context": "c", "question": "q", "answer0": "w", "answer1": "x", "answer2": "y", "answer3": "z", "label": 1},
        {"id": "b", "context": "c", "question": "q", "answer0": "w", "answer1": "x", "answer2": "y", "label": 1},
    ])
    with pytest.raises(DataError, match=r"gold.jsonl:2: missing answer3"):
        list(read_cosmosqa(jsonl))


def test_cosmosqa_scorer_bad_prediction_value_and_gold_label(tmp_path):
    gold = tmp_path / "gold.csv"
    gold.write_text(COSMOS_HEADER + "a,ctx,q?,w,x,y,z,2\n", encoding="utf-8")
    pred = write_jsonl(tmp_path / "pred.jsonl", [{"id": "a", "label": "2"}])
    with pytest.raises(DataError, match=r"pred.jsonl:1: .*expected an integer"):
        score_cosmosqa(str(gold), pred)
    bad = tmp_path / "bad.csv"
    bad.write_text(COSMOS_HEADER + "a,ctx,q?,w,x,y,z,7\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.csv:2: label '7' is not an answer index"):
        score_cosmosqa(str(bad), pred)


def test_cli_prints_one_json_object(tmp_path, capsys):
    gold = write_jsonl(tmp_path / "gold.jsonl", [{"question": "?", "paragraphs": [], "answers": ["Paris"]}])
    pred = write_jsonl(tmp_path / "pred.jsonl", [{"id": 0, "answer": "paris."}])  # id = 0-based position
    assert score_main(["--task", "span_qa", "--gold", gold, "--pred", pred]) == 0
    assert json.loads(capsys.readouterr().out) == {"exact_match": 1.0, "f1": 1.0, "n": 1, "missing": 0}
