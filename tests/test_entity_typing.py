"""Entity typing: records, marking and truncation, the converters, and train -> predict -> score."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import REPO, shared_data
from kadapter_fairseq.data.downstream import (
    SkipRecord,
    TypingRecord,
    encode_marked,
    encode_typing,
    read_typing_records,
)
from kadapter_fairseq.data.encoding import WordEncoder
from kadapter_fairseq.errors import DataError
from kadapter_fairseq.predict import main as predict_main
from kadapter_fairseq.scoring.cli import main as score_main
from kadapter_fairseq.tasks.entity_typing import decide_types


class ChunkBPE:
    """Deterministic stand-in for a BPE: words cut into 3-character pieces, '_' marks a leading space."""

    def encode(self, text):
        lead = text.startswith(" ")
        word = text.strip()
        chunks = [word[i : i + 3] for i in range(0, len(word), 3)]
        if lead:
            chunks[0] = "_" + chunks[0]
        return " ".join(chunks)


def record(sent, start, end, labels=()):
    return TypingRecord("0", sent, start, end, list(labels), "x.json", 1, 0)


def test_mention_split_at_character_offsets():
    words, span = record("He moved to U.S.-based firms .", 12, 16).words()  # "U.S."
    assert words == ["He", "moved", "to", "U.S.", "-based", "firms", "."] and span == (3, 4)


@pytest.mark.parametrize("start, end", [(-1, 2), (3, 99), (4, 4), (2, 3)])
def test_mention_outside_or_empty_is_a_skip(start, end):
    with pytest.raises(SkipRecord) as e:
        record("ab  cd", start, end).words()
    assert e.value.reason in ("entity span outside the sentence", "empty entity mention")


def test_marker_position_and_truncation_keep_the_mention():
    enc = WordEncoder(ChunkBPE())
    words = [f"w{i}" for i in range(20)]
    full = encode_marked(enc, words, [(10, 12, "@")], max_len=100)
    assert not full.truncated and full.pieces[full.positions[0] - 1] == "_@"
    cut = encode_marked(enc, words, [(10, 12, "@")], max_len=8)  # 6 pieces: "@ w10 w11 @" is 4
    assert cut.truncated and len(cut.pieces) == 6
    assert cut.pieces[cut.positions[0] - 1] == "_@" and cut.pieces.count("_@") == 2
    with pytest.raises(SkipRecord, match="marked entities do not fit max_len"):
        encode_marked(enc, words, [(10, 12, "@")], max_len=5)


def test_typing_encoding_marks_the_mention():
    seq = encode_typing(WordEncoder(ChunkBPE()), record("Obama visited Paris", 14, 19), 64)
    assert seq.pieces == ["Oba", "ma", "_vis", "ite", "d", "_@", "_Par", "is", "_@"] and seq.positions == [6]


def test_decision_rules():
    logits = torch.tensor([[-1.0, 0.5, 2.0], [-3.0, -0.5, -2.0]])
    assert decide_types(logits, at_least_one=False).tolist() == [[False, True, True], [False, False, False]]
    # FIGER: the top type even when no logit is above 0
    assert decide_types(logits, at_least_one=True).tolist() == [[False, True, True], [False, True, False]]


def test_records_from_json_lines_name_the_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"sent": "a", "start": 0, "end": 1, "labels": ["t"]}\n{"sent": "a", "start": 0, "end": 1}\n')
    it = read_typing_records(str(path))
    assert next(it).labels == ["t"]
    with pytest.raises(DataError, match=r"x\.jsonl:2: record 1: missing field 'labels'"):
        next(it)


def test_ufet_crowd_converts_to_the_ernie_9type_files(tmp_path):
    crowd = shared_data("openentity", "ufet_crowd", "dev.json")
    ernie = shared_data("openentity", "ernie_9type", "dev.json")
    from data_prep.openentity import main

    out = tmp_path / "dev.json"
    main(["from-ufet", "--input", crowd, "--general", "--output", str(out)])
    converted, expected = json.loads(out.read_text()), json.loads(open(ernie).read())
    assert len(converted) == len(expected) == 1998
    for got, want in zip(converted, expected):
        assert {k: got[k] for k in ("sent", "start", "end", "labels")} == {k: want[k] for k in ("sent", "start", "end", "labels")}


# --------------------------------------------------------------------------- end to end (tiny base)

def run_module(args, cwd=REPO, timeout=300):
    proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def train(config, data, base, save_dir, *extra):
    proc = run_module(["fairseq_cli.hydra_train", "--config-dir", "configs", "--config-name", config,
                      f"task.data={data}", f"model.roberta_path={base}", f"checkpoint.save_dir={save_dir}", *extra])
    log = proc.stdout + proc.stderr
    valid = [line for line in log.splitlines() if "[valid]" in line and "valid on" in line]
    assert valid, log[-3000:]
    return dict(re.findall(r"\| (\w+) ([\d.]+)", valid[-1]))


@pytest.fixture(scope="module")
def openentity_slice(tmp_path_factory):
    """40 real OpenEntity records per split, two of them broken on purpose."""
    src = shared_data("openentity", "ernie_9type")
    out = tmp_path_factory.mktemp("openentity")
    for split, name in (("train", "train.json"), ("valid", "dev.json")):
        records = json.load(open(os.path.join(src, name)))[:40]
        records[3]["start"] = 10_000  # span outside the sentence: a counted skip
        (out / f"{split}.json").write_text(json.dumps(records))
    return out


def test_convert_train_predict_score(openentity_slice, tiny_base, tmp_path, capsys):
    from data_prep.openentity import main as convert_main

    data = tmp_path / "bin"
    convert_main(["convert", "--roberta-dir", tiny_base, "--train", str(openentity_slice / "train.json"),
                  "--valid", str(openentity_slice / "valid.json"), "--labels",
                  shared_data("openentity", "ernie_9type", "types.txt"), "--max-len", "96", "--out", str(data)])
    prep = json.loads((data / "prep.json").read_text())
    assert prep["counts"]["train"]["skipped"] == {"entity span outside the sentence": 1}
    assert prep["examples"]["train"] == 39 and prep["truncated"]["train"] > 0
    ids = (data / "train.ids").read_text().split()
    assert ids[:4] == ["0", "1", "2", "4"]  # record 3 was skipped; ids keep the source positions

    metrics = train("entity_typing_cpu", data, tiny_base, tmp_path / "ckpt", "optimization.max_update=3")
    assert {"f1", "precision", "recall", "macro_f1", "strict_accuracy"} <= set(metrics)

    pred = tmp_path / "valid.pred.jsonl"
    assert predict_main(["--task", "figer", "--checkpoint", str(tmp_path / "ckpt" / "checkpoint_best.pt"), "--data-dir",
                         str(data), "--input", str(openentity_slice / "valid.json"), "--output", str(pred)]) == 0
    rows = [json.loads(line) for line in pred.read_text().splitlines()]
    assert [r["id"] for r in rows] == [str(i) for i in range(40)]  # one line per input record, in order
    assert rows[3] == {"id": "3", "labels": [], "skipped": "entity span outside the sentence"}
    assert all(r["labels"] for r in rows if "skipped" not in r)  # FIGER rule: never empty
    assert score_main(["--task", "figer", "--gold", str(openentity_slice / "valid.json"), "--pred", str(pred)]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["n"] == 40 and scores["missing"] == 0
    assert all(0.0 <= scores[k] <= 1.0 for k in ("strict_accuracy", "macro_f1", "micro_f1"))


def test_label_outside_the_label_set_names_file_and_line(tiny_base, tmp_path):
    from data_prep.openentity import main as convert_main

    src = tmp_path / "train.json"
    src.write_text('[{"sent": "Obama spoke", "start": 0, "end": 5, "labels": ["person"]},\n'
                   ' {"sent": "Paris is big", "start": 0, "end": 5, "labels": ["city"]}]\n')
    labels = tmp_path / "types.txt"
    labels.write_text("person\nlocation\n")
    with pytest.raises(DataError, match=r"train\.json:2: record 1: label 'city' is not in the label set"):
        convert_main(["convert", "--roberta-dir", tiny_base, "--train", str(src), "--labels", str(labels),
                      "--out", str(tmp_path / "bin")])
