"""data_prep.kg: a hand-made knowledge graph round-trips into relation classification, masked facts and
LAMA probe directories that kadapter-probe reads; bad input names file and line."""
import json
import os

import pytest

from data_prep import kg
from kadapter_fairseq.errors import DataError, KAdapterError

# the base's text: every object recurs, so each is one whole-word piece; "Nowhere Land" is two words
TEXT = [
    "Alice was born in Paris and Bob was born in Rome .",
    "Carol works for Acme and Dave works for Globex .",
    "Paris lies in France ; Rome lies in Italy .",
    "Erin studied in Rome and Frank studied in Paris .",
] * 8
TEMPLATES = [
    {"relation": "born_in", "template": "[X] was born in [Y] .", "label": "place of birth"},
    {"relation": "born_in", "template": "The birthplace of [X] is [Y] ."},
    {"relation": "works_for", "template": "[X] works for [Y] ."},
    {"relation": "city_in", "template": "[X] lies in [Y] ."},
    {"relation": "city_in", "template": "[X]'s country is [Y] ."},
]
PROBE_TEMPLATES = [
    {"relation": "born_in", "template": "In [Y] , [X] was born ."},
    {"relation": "works_for", "template": "[Y] employs [X] ."},
]
TRIPLES = [
    ("Alice", "born_in", "Paris", "train"),
    ("Bob", "born_in", "Rome", "train"),
    ("Carol", "born_in", "Paris", "train"),
    ("Carol", "works_for", "Acme", "train"),
    ("Paris", "city_in", "France", "train"),
    ("Alice", "born_in", "Paris", "train"),  # a repeat: counted, skipped
    ("Dave", "born_in", "Nowhere Land", "train"),  # two words: no probe or masked fact, still a relation sentence
    ("Erin", "born_in", "Rome", "test"),
    ("Frank", "born_in", "Paris", "test"),
    ("Dave", "works_for", "Globex", "test"),
    ("Rome", "city_in", "Italy", "test"),
]


@pytest.fixture(scope="module")
def kg_base(tmp_path_factory):
    from kadapter_fairseq.tools.tiny_base import make_tiny_base

    return make_tiny_base(str(tmp_path_factory.mktemp("kg_base")), texts=TEXT, seed=0)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def write_tsv(path, rows):
    path.write_text("".join("\t".join(r) + "\n" for r in rows))
    return path


def write_raw(path, text):
    path.write_text(text)
    return path


def graph(tmp_path, rows=TRIPLES, templates=TEMPLATES, probe=PROBE_TEMPLATES):
    return (write_tsv(tmp_path / "triples.tsv", rows), write_jsonl(tmp_path / "relations.jsonl", templates),
            write_jsonl(tmp_path / "probe.jsonl", probe))


def convert(base, triples, relations, probe, out, *extra):
    argv = ["--triples", str(triples), "--relations", str(relations), "--roberta-dir", base, "--out", str(out),
            "--train-partitions", "train", "--valid-fraction", "0.2", *extra]
    if probe is not None:
        argv += ["--probe-templates", str(probe)]
    return kg.convert(kg.build_parser().parse_args(argv))


@pytest.fixture(scope="module")
def converted(kg_base, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kg")
    triples, relations, probe = graph(tmp)
    info = convert(kg_base, triples, relations, probe, tmp / "out")
    return tmp / "out", info


def load_split(data_dir, split, dictionary):
    from kadapter_fairseq.tasks.base import load_source

    src = load_source(str(data_dir), split, dictionary)
    side = {ext: (data_dir / f"{split}.{ext}").read_text().splitlines() for ext in ("positions", "ids")}
    return [src[i] for i in range(len(src))], side


def test_counts_and_skips_in_prep_json(converted):
    out, info = converted
    prep = json.loads((out / "prep.json").read_text())
    assert prep["reading"]["kept"] == 10 and prep["reading"]["skipped"] == {"duplicate_triple": 1}
    assert prep["reading"]["skipped_examples"]["duplicate_triple"][0].endswith("triples.tsv:6")
    assert prep["partitions"] == {"train": 6, "test": 4}
    # training sentences: born_in 4 facts x 2 templates, works_for 1 x 1, city_in 1 x 2
    assert sum(prep["outputs"]["relation"]["examples"].values()) == 11
    mlm = prep["outputs"]["mlm"]
    assert sum(mlm["examples"].values()) == 9 and mlm["counts"]["skipped"] == {"object_not_single_token": 2}
    assert prep["outputs"]["probe"]["counts"]["skipped"] == {"object_not_single_token": 1}


def test_relation_data_marks_subject_and_object(converted, kg_base):
    from kadapter_fairseq.hub import load_base_dictionary

    out, _ = converted
    d = load_base_dictionary(kg_base)
    labels = (out / "relation" / "labels.txt").read_text().split()
    assert labels == ["born_in", "city_in", "works_for"]  # most frequent first, ties by name
    seen = 0
    for split in ("train", "valid"):
        rows, side = load_split(out / "relation", split, d)
        rels = (out / "relation" / f"{split}.label").read_text().split()
        for tokens, pos, rel in zip(rows, side["positions"], rels):
            a, b = map(int, pos.split())
            assert d[tokens[a]] == "\u2581@" and d[tokens[b]] == "\u2581#"
            text = d.string(tokens[1:-1]).replace(" ", "").replace("\u2581", " ").strip()
            if text.startswith("@ Carol @ works"):
                assert rel == "works_for" and text == "@ Carol @ works for # Acme # ."
            if text.startswith("@ Paris @"):
                assert rel == "city_in" and text in ("@ Paris @ lies in # France # .", "@ Paris @ 's country is # France # .")
            seen += 1
    assert seen == 11


def test_masked_facts_are_the_probes_queries(converted, kg_base):
    """Each masked-fact sentence, with its object masked, is token for token the LAMA probe's query."""
    from kadapter_fairseq.hub import KAdapterHub
    from kadapter_fairseq.probe.lama import Vocabulary, template_query

    out, _ = converted
    hub = KAdapterHub.from_pretrained(kg_base)
    vocab = Vocabulary(hub.dictionary, hub.bpe)
    templates = {t["template"]: t["relation"] for t in TEMPLATES}
    expected = {}
    for head, rel, tail, part in TRIPLES:
        if part == "train" and " " not in tail:
            for t, r in templates.items():
                if r == rel:
                    q = vocab.encode_sentence(template_query(t, head), first=True)
                    expected[tuple(q.tolist())] = vocab.dictionary.index("\u2581" + tail)
    got = {}
    for split in ("train", "valid"):
        rows, side = load_split(out / "mlm", split, hub.dictionary)
        for tokens, pos in zip(rows, side["positions"]):
            p = int(pos)
            masked = tokens.clone()
            masked[p] = vocab.mask_idx
            got[tuple(masked.tolist())] = int(tokens[p])
    assert got == expected and len(got) == 9


def test_probe_directories_read_by_the_probe(converted, kg_base, tmp_path):
    from kadapter_fairseq.probe.cli import main as probe_main

    out, _ = converted
    train_dir = out / "probe" / "train_templates" / "train"
    names = [json.loads(line)["relation"] for line in (train_dir / "relations.jsonl").read_text().splitlines()]
    assert names == ["born_in.t1", "born_in.t2", "works_for", "city_in.t1", "city_in.t2"]
    assert sorted(os.listdir(train_dir / "TREx")) == sorted(f"{n}.jsonl" for n in names)
    facts = [json.loads(line) for line in (train_dir / "TREx" / "born_in.t2.jsonl").read_text().splitlines()]
    assert [(f["sub_label"], f["obj_label"]) for f in facts] == [("Alice", "Paris"), ("Bob", "Rome"), ("Carol", "Paris")]
    majority = kg.majority_baseline(str(train_dir))
    assert majority["relations"]["born_in.t1"] == {"relation": "born_in", "object": "Paris", "rate": 2 / 3, "n": 3}
    assert majority["macro"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 1 + 1) / 5)
    held = out / "probe" / "probe_templates" / "test"
    assert [json.loads(line)["template"] for line in (held / "relations.jsonl").read_text().splitlines()] == \
        ["In [Y] , [X] was born .", "[Y] employs [X] ."]
    for data, n in ((train_dir, 3 + 3 + 1 + 1 + 1), (held, 2 + 1)):
        probe_main(["lama", "--roberta-dir", kg_base, "--data", str(data), "--corpus", "TREx", "--out", str(tmp_path / data.name)])
        results = json.loads((tmp_path / data.name / "results.json").read_text())
        assert results["n_facts"] == n and results["skipped"] == {}


def test_json_lines_input_gives_the_same_data(converted, kg_base, tmp_path):
    out, _ = converted
    triples = write_jsonl(tmp_path / "triples.jsonl", [
        {"sub_label": h, "relation": r, "obj_label": t, "partition": p} for h, r, t, p in TRIPLES])
    _, relations, probe = graph(tmp_path)
    convert(kg_base, triples, relations, probe, tmp_path / "out")
    for sub in ("mlm/input0/train.bin", "mlm/train.positions", "relation/input0/valid.bin", "relation/train.label",
                "probe/train_templates/test/TREx/born_in.t1.jsonl"):
        a, b = (out / sub).read_bytes(), (tmp_path / "out" / sub).read_bytes()
        if sub.endswith(".jsonl"):  # the facts' ids name their source file and line
            a, b = (json.loads(line)["obj_label"] for line in a.splitlines()), (json.loads(line)["obj_label"] for line in b.splitlines())
            a, b = list(a), list(b)
        assert a == b, sub


def test_holdout_fraction_moves_whole_subjects(kg_base, tmp_path):
    rows = [(f"S{i}", "born_in", "Paris" if i % 2 else "Rome") for i in range(40)]
    rows += [(f"S{i}", "works_for", "Acme") for i in range(40)]
    triples, relations, _ = graph(tmp_path, rows=rows)
    facts = list(kg.read_triples([str(triples)], kg.read_templates(str(relations)), holdout_fraction=0.25, seed=3))
    held = {f.head for f in facts if f.partition == "heldout"}
    assert 0 < len(held) < 40
    assert all((f.partition == "heldout") == (f.head in held) for f in facts)
    again = list(kg.read_triples([str(triples)], kg.read_templates(str(relations)), holdout_fraction=0.25, seed=3))
    assert [f.partition for f in again] == [f.partition for f in facts]


@pytest.mark.parametrize("what,make,message", [
    ("relation missing", lambda t: write_tsv(t / "triples.tsv", [("Alice", "born_in", "Paris"), ("Bob", "lives_in", "Rome")]),
     r"triples.tsv:2: relation 'lives_in' is not in the relations file"),
    ("empty field", lambda t: write_tsv(t / "triples.tsv", [("Alice", " ", "Paris")]), r"triples.tsv:1: empty relation"),
    ("columns", lambda t: write_tsv(t / "triples.tsv", [("Alice", "born_in")]), r"triples.tsv:1: expected head<TAB>relation"),
    ("json field", lambda t: write_jsonl(t / "triples.jsonl", [{"sub_label": "Alice", "relation": "born_in", "obj_label": ""}]),
     r"triples.jsonl:1: empty 'obj_label'"),
    ("partition name", lambda t: write_tsv(t / "triples.tsv", [("Alice", "born_in", "Paris", "../up")]),
     r"triples.tsv:1: partition '../up' cannot name a file"),
    ("json syntax", lambda t: write_raw(t / "triples.jsonl", '{"sub_label": "Alice",\n'),
     r"triples.jsonl:1: malformed JSON"),
])
def test_bad_triples_name_file_and_line(kg_base, tmp_path, what, make, message):
    _, relations, probe = graph(tmp_path)
    triples = make(tmp_path)
    with pytest.raises(DataError, match=message):
        convert(kg_base, triples, relations, probe, tmp_path / "out")


@pytest.mark.parametrize("templates,probe,message", [
    ([{"relation": "born_in", "template": "[X] was born somewhere ."}], None, r"relations.jsonl:1: template .* must contain \[Y\]"),
    ([{"relation": "born_in", "template": "[X] was born in [Y] ."}, {"relation": "", "template": "[X] [Y]"}], None,
     r"relations.jsonl:2: empty 'relation'"),
    ([{"relation": "born_in", "template": "[X] was born in [Y] ."}, {"relation": "born_in", "template": "[X] was born in [Y] ."}],
     None, r"relations.jsonl:2: template .* given twice"),
    (TEMPLATES, [{"relation": "born_in", "template": "In [Y] , [X] was born ."}, {"relation": "works_for", "template": "[X] works for [Y] ."}],
     r"probe.jsonl:2: template .* is also a training template of works_for"),
    (TEMPLATES, [{"relation": "died_in", "template": "[X] died in [Y] ."}], r"probe.jsonl:1: relation died_in has no training template"),
    (TEMPLATES, [{"relation": "born_in", "template": "[X] [X] [Y]"}], r"probe.jsonl:1: template .* must contain \[X\] exactly once"),
])
def test_bad_templates_name_file_and_line(kg_base, tmp_path, templates, probe, message):
    triples, relations, probe_path = graph(tmp_path, rows=[("Alice", "born_in", "Paris")], templates=templates,
                                           probe=probe or [])
    with pytest.raises(DataError, match=message):
        convert(kg_base, triples, relations, probe_path if probe else None, tmp_path / "out")


def test_one_line_error_from_the_command(kg_base, tmp_path, capsys):
    from data_prep.common import run_main

    triples, relations, _ = graph(tmp_path, rows=[("Alice", "born_in", "Paris"), ("Bob", "", "Rome")])
    with pytest.raises(SystemExit) as e:
        run_main(kg.main, ["--triples", str(triples), "--relations", str(relations), "--roberta-dir", kg_base,
                           "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {triples}:2: empty relation"


def test_no_fact_in_the_trained_partition_is_an_error(kg_base, tmp_path):
    triples, relations, probe = graph(tmp_path)
    with pytest.raises(KAdapterError, match="--train-partitions adapter: no fact is in that partition"):
        convert(kg_base, triples, relations, probe, tmp_path / "out", "--train-partitions", "adapter")


def test_template_words_split_glued_slots():
    words, subj, obj = kg.template_words("[X]'s home is ([Y]).", "Ada Lovelace", "London")
    assert words == ["Ada", "Lovelace", "'s", "home", "is", "(", "London", ")."]
    assert subj == (0, 2) and obj == (6, 7)
