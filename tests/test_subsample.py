"""Seeded training subsamples (--fraction/--max-examples/--max-examples-per-label/--seed) and
TACRED's --max-negatives, in the selection rule and through the converters."""
import json
from collections import Counter

import pytest

from data_prep.subsample import NO_LABEL, Subsample
from kadapter_fairseq.errors import KAdapterError

RELATIONS = ["per:age", "org:founded", "per:title"]


# ----------------------------------------------------------------------------------------------
# the selection rule


def test_same_seed_same_subset_other_seed_other_subset():
    a = Subsample(fraction=0.3, seed=3).select(100)
    assert a == Subsample(fraction=0.3, seed=3).select(100)
    assert a != Subsample(fraction=0.3, seed=4).select(100)
    assert a == sorted(a) and len(set(a)) == 30  # kept in the original order, no repeats


@pytest.mark.parametrize("sub, n, expected", [
    (Subsample(fraction=0.1), 50, 5),
    (Subsample(fraction=0.25), 10, 3),        # 2.5 rounds half up
    (Subsample(fraction=0.001), 50, 1),       # at least one example
    (Subsample(fraction=1.0), 17, 17),
    (Subsample(max_examples=7), 50, 7),
    (Subsample(max_examples=70), 50, 50),
    (Subsample(fraction=0.5, max_examples=7), 50, 7),   # the smaller count wins
    (Subsample(fraction=0.1, max_examples=7), 50, 5),
])
def test_exact_counts(sub, n, expected):
    assert len(sub.select(n)) == expected


def test_per_label_cap_single_and_multi_label():
    labels = [[RELATIONS[i % 3]] for i in range(30)] + [["rare"]] * 2
    keep = Subsample(max_examples_per_label=4, seed=2).select(len(labels), labels)
    counts = Counter(labels[i][0] for i in keep)
    assert counts == {"per:age": 4, "org:founded": 4, "per:title": 4, "rare": 2}

    multi = [["a", "b"]] * 5 + [["a"]] * 5 + [["b"]] * 5 + [[]] * 5
    for seed in range(5):
        keep = Subsample(max_examples_per_label=3, seed=seed).select(len(multi), multi)
        counts = Counter(name for i in keep for name in (multi[i] or [NO_LABEL]))
        assert max(counts.values()) <= 3 and counts[NO_LABEL] == 3


def test_apply_records_what_was_asked_and_counts():
    items = [f"ex{i}" for i in range(20)]
    kept, record = Subsample(max_examples=6, seed=9).apply(items, labels_of=lambda ex: [ex[-1]])
    assert len(kept) == 6 and set(kept) <= set(items)
    assert record["before"] == 20 and record["after"] == 6 and record["seed"] == 9 and record["max_examples"] == 6
    assert record["fraction"] is None and sum(record["labels_after"].values()) == 6
    assert Subsample(seed=9).apply(items) == (items, None)  # nothing asked: everything, no record


@pytest.mark.parametrize("kwargs, message", [
    ({"fraction": 0.0}, r"--fraction must be in \(0, 1\], got 0.0"),
    ({"fraction": 1.5}, r"--fraction must be in \(0, 1\], got 1.5"),
    ({"max_examples": 0}, r"--max-examples must be a positive integer, got 0"),
    ({"max_examples_per_label": 2.5}, r"--max-examples-per-label must be a positive integer"),
])
def test_invalid_values_in_python(kwargs, message):
    with pytest.raises(KAdapterError, match=message):
        Subsample(**kwargs).check()


@pytest.mark.parametrize("argv, message", [
    (["--fraction", "0"], r"argument --fraction: must be in \(0, 1\], got 0"),
    (["--fraction", "nan"], r"argument --fraction: must be in \(0, 1\], got nan"),
    (["--fraction", "half"], r"argument --fraction: expected a number in \(0, 1\], got 'half'"),
    (["--max-examples", "-3"], r"argument --max-examples: must be at least 1, got -3"),
    (["--max-examples-per-label", "x"], r"argument --max-examples-per-label: expected a positive integer, got 'x'"),
    (["--max-negatives", "0"], r"argument --max-negatives: must be at least 1, got 0"),
])
def test_invalid_values_on_the_command_line(argv, message, capsys):
    from data_prep.tacred import build_parser

    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--train", "t.json", "--out", "o"] + argv)
    assert e.value.code == 2
    import re

    assert re.search(message, capsys.readouterr().err)


# ----------------------------------------------------------------------------------------------
# through the converters (tiny base, fairseq-preprocess in process)


def tacred_records(n, negatives_every=2):
    """Synthetic TACRED: every ``negatives_every``-th record is no_relation, the rest cycle RELATIONS."""
    out = []
    for i in range(n):
        label = "no_relation" if i % negatives_every == 0 else RELATIONS[i % 3]
        out.append({"id": f"r{i}", "token": ["Obama", "was", "born", "in", "Hawaii", f"{i}", "."], "subj_start": 0,
                    "subj_end": 0, "obj_start": 4, "obj_end": 4, "relation": label})
    return out


@pytest.fixture(scope="module")
def tacred_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tacred")
    train, valid = root / "train.json", root / "valid.json"
    train.write_text(json.dumps(tacred_records(60)))
    valid.write_text(json.dumps(tacred_records(9)))
    return root


def convert_tacred(tiny_base, files, out, *extra):
    from data_prep import tacred

    tacred.main(["--train", str(files / "train.json"), "--valid", str(files / "valid.json"), "--roberta-dir", tiny_base,
                 "--out", str(out), *extra])
    return json.loads((out / "prep.json").read_text())


def lines(path):
    return path.read_text().splitlines()


def test_tacred_per_label_cap_is_seeded_and_recorded(tiny_base, tacred_files, tmp_path):
    prep = convert_tacred(tiny_base, tacred_files, tmp_path / "a", "--max-examples-per-label", "4", "--seed", "7")
    labels = Counter(lines(tmp_path / "a" / "train.label"))
    assert labels == {"no_relation": 4, "per:age": 4, "org:founded": 4, "per:title": 4}
    assert len(lines(tmp_path / "a" / "valid.label")) == 9  # validation untouched
    sub = prep["subsample"]
    assert (sub["before"], sub["after"], sub["seed"], sub["max_examples_per_label"]) == (60, 16, 7, 4)
    assert sub["labels_before"]["no_relation"] == 30 and sub["labels_after"] == dict(sorted(labels.items()))
    assert prep["examples"] == {"train": 16, "valid": 9}
    assert prep["num_labels"] == 4  # the label set comes from the whole training file

    convert_tacred(tiny_base, tacred_files, tmp_path / "b", "--max-examples-per-label", "4", "--seed", "7")
    convert_tacred(tiny_base, tacred_files, tmp_path / "c", "--max-examples-per-label", "4", "--seed", "8")
    ids = {k: lines(tmp_path / k / "train.ids") for k in "abc"}
    assert ids["a"] == ids["b"] and ids["a"] != ids["c"]
    assert ids["a"] == sorted(ids["a"], key=lambda s: int(s[1:]))  # file order kept


def test_tacred_max_negatives_keeps_the_first_n_then_subsamples(tiny_base, tacred_files, tmp_path):
    prep = convert_tacred(tiny_base, tacred_files, tmp_path / "neg", "--max-negatives", "5")
    ids, labels = lines(tmp_path / "neg" / "train.ids"), lines(tmp_path / "neg" / "train.label")
    negatives = [i for i, label in zip(ids, labels) if label == "no_relation"]
    assert negatives == ["r0", "r2", "r4", "r6", "r8"]  # the first five of the file
    assert len(ids) == 30 + 5  # every positive kept
    assert prep["max_negatives"] == {"limit": 5, "label": "no_relation", "records_read": 60,
                                     "negatives_before": 30, "negatives_after": 5}
    assert prep["subsample"] is None

    prep = convert_tacred(tiny_base, tacred_files, tmp_path / "both", "--max-negatives", "5", "--fraction", "0.5")
    assert prep["subsample"]["before"] == 35 and prep["subsample"]["after"] == 18  # 17.5 rounds up
    assert len(lines(tmp_path / "both" / "train.ids")) == 18


def test_subsample_without_train_split_is_an_error(tiny_base, tacred_files, tmp_path):
    from data_prep import tacred

    with pytest.raises(KAdapterError, match="subsample the training split, but no --train was given"):
        tacred.main(["--valid", str(tacred_files / "valid.json"), "--labels", str(tacred_files / "valid.json"),
                     "--roberta-dir", tiny_base, "--out", str(tmp_path / "x"), "--fraction", "0.5"])


def test_cosmosqa_fraction(tiny_base, tmp_path):
    from data_prep import cosmosqa

    rows = [{"id": f"q{i}", "context": "Obama was born in Hawaii .", "question": "Where ?", "answer0": "Hawaii",
             "answer1": "Paris", "answer2": "France", "answer3": "the sea", "label": i % 4} for i in range(40)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cosmosqa.main(["--train", str(tmp_path / "train.jsonl"), "--roberta-dir", tiny_base, "--out", str(tmp_path / "out"),
                   "--fraction", "0.2", "--seed", "3"])
    prep = json.loads((tmp_path / "out" / "prep.json").read_text())
    assert (prep["subsample"]["before"], prep["subsample"]["after"], prep["subsample"]["seed"]) == (40, 8, 3)
    assert len(lines(tmp_path / "out" / "train.ids")) == len(lines(tmp_path / "out" / "train.label")) == 8


def test_span_qa_max_examples_counts_usable_questions(tiny_base, tmp_path):
    from data_prep import span_qa

    rows = [{"id": f"q{i}", "question": "Where was Obama born ?",
             "paragraphs": ["Obama was born in Hawaii .", "Paris is in France ."], "answers": ["Hawaii"]}
            for i in range(12)]
    rows += [{"id": "none", "question": "Who ?", "paragraphs": ["The sea ."], "answers": ["Turing"]}]  # skipped: no answer
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    span_qa.main(["--train", str(tmp_path / "train.jsonl"), "--roberta-dir", tiny_base, "--out", str(tmp_path / "out"),
                  "--max-examples", "5", "--seed", "2"])
    prep = json.loads((tmp_path / "out" / "prep.json").read_text())
    assert (prep["subsample"]["before"], prep["subsample"]["after"]) == (12, 5)
    kept = [json.loads(line)["id"] for line in lines(tmp_path / "out" / "train.jsonl")]
    assert len(kept) == 5 and "none" not in kept
    pairs = [json.loads(line) for line in lines(tmp_path / "out" / "train.pairs.jsonl")]
    # only pairs with the answer train; each kept question keeps its answer-bearing paragraph, renumbered
    assert sorted({p["q"] for p in pairs}) == list(range(5))
    assert lines(tmp_path / "out" / "train.ids") == [kept[p["q"]] for p in pairs]

    from data_prep import quasar

    (tmp_path / "q.json").write_text(json.dumps({"uid": "1", "question": "Where ?", "answer": "Hawaii"}) + "\n")
    (tmp_path / "c.json").write_text(json.dumps({"uid": "1", "contexts": [[1.0, "Obama was born in Hawaii ."]]}) + "\n")
    with pytest.raises(KAdapterError, match="--layout-only writes every question"):
        quasar.main(["--train", str(tmp_path / "q.json"), str(tmp_path / "c.json"), "--out", str(tmp_path / "l"),
                     "--layout-only", "--fraction", "0.5"])
