"""Scorers and metric functions against hand-computed values, and their input checks."""
import json

import pytest

from kadapter_fairseq.errors import DataError
from kadapter_fairseq.scoring import align, read_predictions
from kadapter_fairseq.scoring.classification import (
    loose_macro,
    prf,
    relation_counts,
    relation_prf,
    score_figer,
    score_openentity,
    score_tacred,
    typing_counts,
    typing_metrics,
)
from kadapter_fairseq.scoring.cli import main as score_main


def write_json(path, obj):
    path.write_text(json.dumps(obj), encoding="utf-8")
    return str(path)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def typing_gold(tmp_path, labels):
    return write_json(tmp_path / "gold.json", [{"sent": "a b c", "start": 0, "end": 1, "labels": l} for l in labels])


# --------------------------------------------------------------------------- metric functions

def test_prf_from_counts():
    assert prf(3, 1, 2) == pytest.approx((0.75, 0.6, 2 * 0.75 * 0.6 / 1.35))
    assert prf(0, 0, 4) == (0.0, 0.0, 0.0)
    assert prf(0, 0, 4, empty_precision=1.0) == (1.0, 0.0, 0.0)


def test_typing_counts_by_hand():
    # ex1: gold {a,b}, pred {a}     -> hit 1, P=1,   R=1/2, not exact
    # ex2: gold {c},   pred {}      -> hit 0, P=0,   R=0    (no predicted type)
    # ex3: gold {a},   pred {a,c}   -> hit 1, P=1/2, R=1
    # ex4: gold {b},   pred {b}     -> exact
    pairs = [(["a", "b"], ["a"]), (["c"], []), (["a"], ["a", "c"]), (["b"], ["b"])]
    c = typing_counts(pairs)
    assert c == {"n": 4, "n_exact": 1, "tp": 3, "fp": 1, "fn": 2, "sum_p": 2.5, "sum_r": 2.5}
    m = typing_metrics(c)
    assert m["precision"] == pytest.approx(3 / 4) and m["recall"] == pytest.approx(3 / 5)
    assert m["macro_precision"] == pytest.approx(2.5 / 4) and m["macro_recall"] == pytest.approx(2.5 / 4)
    assert m["macro_f1"] == pytest.approx(2.5 / 4)
    assert m["strict_accuracy"] == pytest.approx(0.25)
    assert all(isinstance(v, float) for v in m.values())


def test_counts_sum_over_batches_like_the_whole():
    pairs = [(["a", "b"], ["a"]), (["c"], []), (["a"], ["a", "c"]), (["b"], ["b"]), (["a"], ["b"])]
    whole = typing_counts(pairs)
    halves = [typing_counts(pairs[:2]), typing_counts(pairs[2:])]
    assert {k: halves[0][k] + halves[1][k] for k in whole} == pytest.approx(whole)
    assert loose_macro(0, 0, 0) == (0.0, 0.0, 0.0)


def test_relation_counts_standard_scorer():
    pairs = [
        ("per:age", "per:age"),  # correct guess: tp
        ("per:age", "no_relation"),  # missed: fn
        ("no_relation", "org:founded_by"),  # spurious: fp
        ("org:founded_by", "per:age"),  # wrong relation: fp and fn
        ("no_relation", "no_relation"),  # nothing
    ]
    assert relation_counts(pairs) == {"tp": 1, "fp": 2, "fn": 2}
    assert relation_prf(1, 2, 2) == pytest.approx((1 / 3, 1 / 3, 1 / 3))


# --------------------------------------------------------------------------- scorers

def test_openentity_scorer_with_an_empty_prediction(tmp_path):
    gold = typing_gold(tmp_path, [["person", "entity"], ["location"], ["organization"]])
    pred = write_jsonl(tmp_path / "p.jsonl", [
        {"id": 0, "labels": ["person"]},
        {"id": "1", "labels": []},  # no predicted type; ids compare as strings
        {"id": 2, "labels": ["organization", "group"]},
    ])
    # tp = 1 + 0 + 1 = 2; predicted = 1 + 0 + 2 = 3; gold = 2 + 1 + 1 = 4
    assert score_openentity(gold, pred) == pytest.approx(
        {"precision": 2 / 3, "recall": 0.5, "f1": 2 * (2 / 3) * 0.5 / (2 / 3 + 0.5), "n": 3, "missing": 0})


def test_openentity_nothing_predicted_at_all(tmp_path):
    gold = typing_gold(tmp_path, [["person"], ["location"]])
    pred = write_jsonl(tmp_path / "p.jsonl", [{"id": 0, "labels": []}, {"id": 1, "labels": []}])
    assert score_openentity(gold, pred) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "n": 2, "missing": 0}


def test_figer_scorer_by_hand_with_a_missing_prediction(tmp_path):
    gold = typing_gold(tmp_path, [["/person", "/person/artist"], ["/location"], ["/organization"], ["/person"]])
    pred = write_jsonl(tmp_path / "p.jsonl", [
        {"id": 0, "labels": ["/person"]},  # P=1, R=1/2
        {"id": 1, "labels": ["/location"]},  # exact
        {"id": 2, "labels": ["/organization", "/location"]},  # P=1/2, R=1
        # id 3 missing: scored as no types -> P=0, R=0, not exact
    ])
    result = score_figer(gold, pred)
    macro_p = macro_r = (1 + 1 + 0.5 + 0) / 4
    micro_p, micro_r = 3 / 4, 3 / 5
    assert result == pytest.approx({
        "strict_accuracy": 0.25,
        "macro_f1": 2 * macro_p * macro_r / (macro_p + macro_r),
        "micro_f1": 2 * micro_p * micro_r / (micro_p + micro_r),
        "n": 4,
        "missing": 1,
    })
    assert list(result) == ["strict_accuracy", "macro_f1", "micro_f1", "n", "missing"]


def tacred_gold(tmp_path, relations):
    rows = [{"id": f"r{i}", "token": ["A", "met", "B"], "subj_start": 0, "subj_end": 0, "obj_start": 2, "obj_end": 2,
             "relation": rel} for i, rel in enumerate(relations)]
    return write_json(tmp_path / "tacred.json", rows)


def test_tacred_scorer_by_hand(tmp_path):
    gold = tacred_gold(tmp_path, ["per:age", "per:age", "no_relation", "org:founded_by", "no_relation", "per:title"])
    pred = write_jsonl(tmp_path / "p.jsonl", [
        {"id": "r0", "label": "per:age"},  # tp
        {"id": "r1", "label": "no_relation"},  # fn
        {"id": "r2", "label": "org:founded_by"},  # fp
        {"id": "r3", "label": "per:age"},  # fp + fn
        {"id": "r4", "label": "no_relation"},
        # r5 missing: a guess that matches nothing -> fp + fn
    ])
    assert score_tacred(gold, pred) == pytest.approx(
        {"precision": 1 / 4, "recall": 1 / 4, "f1": 1 / 4, "n": 6, "missing": 1})


def test_tacred_no_relation_guesses_only(tmp_path):
    gold = tacred_gold(tmp_path, ["per:age", "no_relation", "org:founded_by"])
    pred = write_jsonl(tmp_path / "p.jsonl", [{"id": f"r{i}", "label": "no_relation"} for i in range(3)])
    # the standard scorer: no guesses -> precision 1.0, recall 0, F1 0
    assert score_tacred(gold, pred) == {"precision": 1.0, "recall": 0.0, "f1": 0.0, "n": 3, "missing": 0}


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("lines, line, message", [
    (['{"id": 0, "labels": []}', "{not json"], 2, "not valid JSON"),
    (['{"labels": []}'], 1, 'no "id" field'),
    (['{"id": 0}'], 1, "no 'labels' field"),
    (['{"id": 0, "labels": "person"}'], 1, "expected a list of label strings"),
    (['{"id": 0, "labels": []}', "", '{"id": "0", "labels": []}'], 3, "already predicted on line 1"),
    (['[1, 2]'], 1, "expected a JSON object"),
])
def test_prediction_file_errors_name_file_and_line(tmp_path, lines, line, message):
    gold = typing_gold(tmp_path, [["person"]])
    pred = tmp_path / "p.jsonl"
    pred.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        score_openentity(gold, str(pred))
    assert str(e.value).startswith(f"{pred}:{line}: ") and message in str(e.value)


def test_prediction_for_an_unknown_id_is_an_error(tmp_path):
    gold = typing_gold(tmp_path, [["person"]])
    pred = write_jsonl(tmp_path / "p.jsonl", [{"id": 0, "labels": []}, {"id": 7, "labels": []}])
    with pytest.raises(DataError, match=r"p\.jsonl:2: prediction for id '7' which is not in the gold file"):
        score_openentity(gold, pred)


def test_align_keeps_gold_order_and_counts_missing(tmp_path):
    preds = read_predictions(write_jsonl(tmp_path / "p.jsonl", [{"id": "b", "label": 2}]), "label")
    assert align({"a": 1, "b": 2, "c": 3}, preds) == ([(1, None), (2, 2), (3, None)], 2)


def test_bad_gold_record_names_file_line_and_record(tmp_path):
    gold = tmp_path / "gold.json"
    gold.write_text('[\n{"sent": "a b", "start": 0, "end": 1, "labels": []},\n{"sent": "a b", "start": "0", "end": 1, '
                    '"labels": []}\n]\n', encoding="utf-8")
    pred = write_jsonl(tmp_path / "p.jsonl", [])
    with pytest.raises(DataError, match=r"gold\.json:3: record 1: field 'start' should be an integer"):
        score_openentity(str(gold), pred)


def test_gold_in_json_lines_with_ids(tmp_path):
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"id": "x", "sent": "a", "start": 0, "end": 1, "labels": ["t"]}\n\n'
                    '{"id": "y", "sent": "b", "start": 0, "end": 1, "labels": ["t"]}\n', encoding="utf-8")
    pred = write_jsonl(tmp_path / "p.jsonl", [{"id": "y", "labels": ["t"]}])
    assert score_openentity(str(gold), pred) == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3),
                                                 "n": 2, "missing": 1}


# --------------------------------------------------------------------------- command line

def test_cli_prints_one_json_object(tmp_path, capsys):
    gold = tacred_gold(tmp_path, ["per:age", "no_relation"])
    pred = write_jsonl(tmp_path / "p.jsonl", [{"id": "r0", "label": "per:age"}, {"id": "r1", "label": "no_relation"}])
    assert score_main(["--task", "tacred", "--gold", gold, "--pred", pred]) == 0
    assert json.loads(capsys.readouterr().out) == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "n": 2, "missing": 0}


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    gold = tacred_gold(tmp_path, ["per:age"])
    pred = write_jsonl(tmp_path / "p.jsonl", [{"id": "r0", "label": 3}])
    assert score_main(["--task", "tacred", "--gold", gold, "--pred", pred]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kadapter-score: error: ") and f"{pred}:1: field 'label': expected a label string" in err
