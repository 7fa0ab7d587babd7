"""TACRED: records, PTB escapes, the SemEval converter, and train -> predict -> score on a synthetic fixture."""
import json
import os

import pytest

from conftest import REPO, shared_data
from kadapter_fairseq.data.downstream import SkipRecord, encode_relation, read_relation_records, unescape_ptb
from kadapter_fairseq.data.encoding import WordEncoder
from kadapter_fairseq.errors import DataError
from kadapter_fairseq.predict import main as predict_main
from kadapter_fairseq.scoring.cli import main as score_main
from test_entity_typing import ChunkBPE, train

FIXTURES = os.path.join(REPO, "tests", "fixtures", "downstream")


def tacred_file(tmp_path, **overrides):
    rec = {"id": "x1", "token": ["Ken", "-LRB-", "57", "-RRB-", "retired", "."], "subj_start": 0, "subj_end": 0,
           "obj_start": 2, "obj_end": 2, "relation": "per:age"}
    rec.update(overrides)
    path = tmp_path / "t.json"
    path.write_text(json.dumps([rec]))
    return str(path)


def test_ptb_escapes_are_undone():
    assert [unescape_ptb(t) for t in ["-LRB-", "-RRB-", "-LSB-", "-RSB-", "-LCB-", "-RCB-", "``", "''", "word"]] == \
        ["(", ")", "[", "]", "{", "}", '"', '"', "word"]


def test_inclusive_spans_marked_subject_then_object(tmp_path):
    rec = next(read_relation_records(tacred_file(tmp_path, subj_end=0, obj_start=2, obj_end=3)))
    assert rec.subj == (0, 1) and rec.obj == (2, 4) and rec.id == "x1"
    seq = encode_relation(WordEncoder(ChunkBPE()), rec, 64)
    # "@ Ken @ ( # 57 ) # retired ." -> the subject's "@" opens at position 1, the object's "#" at 6
    assert seq.pieces == ["@", "_Ken", "_@", "_(", "_#", "_57", "_)", "_#", "_ret", "ire", "d", "_."]
    assert seq.positions == [1, 5]


@pytest.mark.parametrize("overrides, reason", [
    ({"obj_start": 5, "obj_end": 6}, "entity span outside the sentence"),
    ({"subj_start": 1, "subj_end": 0}, "entity span outside the sentence"),
    ({"obj_start": 0, "obj_end": 1}, "subject and object overlap"),
])
def test_bad_spans_are_counted_skips(tmp_path, overrides, reason):
    rec = next(read_relation_records(tacred_file(tmp_path, **overrides)))
    with pytest.raises(SkipRecord) as e:
        encode_relation(WordEncoder(ChunkBPE()), rec, 64)
    assert e.value.reason == reason


def test_missing_field_names_file_line_and_record(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('[\n {"id": "a", "token": ["x"]}\n]')
    with pytest.raises(DataError, match=r"t\.json:2: record 0: missing field 'subj_start'"):
        next(read_relation_records(str(path)))


def test_semeval_to_tacred_json(tmp_path):
    src = shared_data("semeval2010_task8", "TRAIN_FILE.TXT")
    from data_prep.semeval import main

    out = tmp_path / "train.json"
    main(["--input", src, "--output", str(out)])
    records = json.loads(out.read_text())
    assert len(records) == 8000
    first = records[0]
    assert first["token"][12] == "configuration" and first["token"][15] == "elements"
    assert (first["subj_start"], first["subj_end"], first["obj_start"], first["obj_end"]) == (12, 12, 15, 15)
    assert first["relation"] == "Component-Whole(e2,e1)" and first["id"] == "1"
    assert records[1]["relation"] == "no_relation"  # SemEval's Other
    assert len({r["relation"] for r in records}) == 19


def test_semeval_malformed_block_names_the_line(tmp_path):
    src = tmp_path / "bad.txt"
    src.write_text('1\t"The <e1>cat</e1> sat on the <e2>mat</e2>."\r\nOther\r\nComment:\r\n\r\n'
                   '2\t"A <e1>dog</e1> barked."\r\nEntity-Origin(e1,e2)\r\nComment:\r\n\r\n'
                   '3\t"no entities"\r\nmaybe\r\n')
    from data_prep.semeval import main

    with pytest.raises(DataError, match=r"bad\.txt:5: example 2: no <e2>"):
        main(["--input", str(src), "--output", str(tmp_path / "o.json")])
    src.write_text('3\t"The <e1>cat</e1> saw a <e2>dog</e2>."\nmaybe\n')
    with pytest.raises(DataError, match=r"bad\.txt:2: expected a relation"):
        main(["--input", str(src), "--output", str(tmp_path / "o.json")])


def test_convert_train_predict_score_agree_with_validation(tiny_base, tmp_path, capsys):
    from data_prep.tacred import main as convert_main

    train_src = tmp_path / "train.json"
    records = json.load(open(os.path.join(FIXTURES, "tacred_train.json")))
    records.append(dict(records[0], id="bad", obj_start=40, obj_end=41))  # span outside the sentence
    train_src.write_text(json.dumps(records))
    dev = os.path.join(FIXTURES, "tacred_dev.json")
    data = tmp_path / "bin"
    convert_main(["--roberta-dir", tiny_base, "--train", str(train_src), "--valid", dev, "--max-len", "64",
                  "--out", str(data)])
    prep = json.loads((data / "prep.json").read_text())
    assert prep["counts"]["train"]["skipped"] == {"entity span outside the sentence": 1}
    assert prep["examples"] == {"train": 14, "valid": 6}
    assert (data / "labels.txt").read_text().split()[0] == "no_relation"  # most frequent first

    valid = train("tacred_cpu", data, tiny_base, tmp_path / "ckpt", "optimization.max_update=2")
    pred = tmp_path / "dev.pred.jsonl"
    assert predict_main(["--task", "tacred", "--checkpoint", str(tmp_path / "ckpt" / "checkpoint_best.pt"),
                         "--data-dir", str(data), "--input", dev, "--output", str(pred)]) == 0
    rows = [json.loads(line) for line in pred.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"d{i:03d}" for i in range(6)]
    capsys.readouterr()
    assert score_main(["--task", "tacred", "--gold", dev, "--pred", str(pred)]) == 0
    scores = json.loads(capsys.readouterr().out)
    # the criterion's validation metrics and the scorer share their code: same numbers (log rounds to 4 places)
    for key in ("precision", "recall", "f1"):
        assert round(scores[key], 4) == pytest.approx(float(valid[key]))
    assert scores["n"] == 6 and scores["missing"] == 0

    # the same checkpoint asked for entity types: a one-line error, not a traceback
    code = predict_main(["--task", "openentity", "--checkpoint", str(tmp_path / "ckpt" / "checkpoint_best.pt"),
                         "--data-dir", str(data), "--input", dev, "--output", str(tmp_path / "p.jsonl")])
    assert code == 2 and "--task openentity needs a checkpoint trained with task EntityTypingTask" in capsys.readouterr().err
