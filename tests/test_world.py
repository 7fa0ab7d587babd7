"""data_prep.world: a seeded ground-truth world, deterministic, with disjoint partitions and template splits."""
import glob
import json
import os
import re
from collections import Counter

import pytest

from data_prep import world as W

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--persons", "24", "--cities", "6", "--countries", "3", "--companies", "6", "--universities", "6",
         "--statements", "2", "--mentions", "2", "--train-templates", "4"]


def make(tmp_path, seed, *extra):
    out = tmp_path / f"w{seed}"
    W.main(["--seed", str(seed), "--out", str(out), *SMALL, *extra])
    return out


def read_tsv(path):
    return [tuple(line.split("\t")) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = make(tmp_path_factory.mktemp("world"), 5)
    return out, json.loads((out / "world.json").read_text())


def test_same_seed_same_world_other_seed_other_world(tmp_path):
    a, b = make(tmp_path / "a", 7), make(tmp_path / "b", 7)
    files = sorted(os.path.relpath(p, a) for p in glob.glob(str(a / "**" / "*"), recursive=True) if os.path.isfile(p))
    assert "triples.tsv" in files and "downstream/test_adapter.json" in files
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    c = make(tmp_path / "c", 8)
    assert (a / "triples.tsv").read_text() != (c / "triples.tsv").read_text()


def test_partitions_are_disjoint_and_each_fact_stays_in_its_subjects_partition(small):
    out, info = small
    entities = info["entities"]
    by_partition = {p: {e for e, d in entities.items() if d["partition"] == p} for p in W.PARTITIONS}
    assert all(by_partition.values())
    for p, q in ((0, 1), (0, 2), (1, 2)):
        assert not by_partition[W.PARTITIONS[p]] & by_partition[W.PARTITIONS[q]]
    subjects = {s for s, _, _, _ in read_tsv(out / "triples.tsv")}
    assert subjects == set().union(*by_partition.values())  # every partitioned entity is a subject
    assert all(entities[e]["partition"] is None for e in entities if entities[e]["type"] == "country")
    for s, r, o, part in read_tsv(out / "triples.tsv"):
        assert entities[s]["partition"] == part
        assert (entities[s]["type"], entities[o]["type"]) == W.RELATIONS[r][:2]
        if r == "spouse":  # a couple stays in one partition, and the fact holds both ways
            assert entities[o]["partition"] == part and (o, r, s, part) in read_tsv(out / "triples.tsv")
    # one object per subject and relation
    assert not [k for k, n in Counter((s, r) for s, r, _, _ in read_tsv(out / "triples.tsv")).items() if n > 1]


def test_base_text_states_base_facts_only(small):
    out, info = small
    facts = read_tsv(out / "triples.tsv")
    stated = Counter()
    patterns = []
    for relation, (_, _, train, _) in W.RELATIONS.items():
        for t in train:
            rx = "^" + re.escape(t).replace(re.escape("[X]"), "(?P<x>\\w+)").replace(re.escape("[Y]"), "(?P<y>\\w+)") + "$"
            patterns.append((relation, re.compile(rx)))
    mention = [re.compile("^" + re.escape(f).replace(re.escape("[E]"), "\\w+") + "$") for f in W.MENTION_FRAMES]
    truth = {(s, r): o for s, r, o, _ in facts}
    for line in (out / "base_text.txt").read_text().splitlines():
        if any(m.match(line) for m in mention):
            continue
        hits = [(r, m) for r, rx in patterns if (m := rx.match(line)) and (m["x"], r) in truth]
        assert hits, f"a line that is neither a mention nor a fact: {line!r}"
        r, m = hits[0]
        assert truth[(m["x"], r)] == m["y"]
        stated[(m["x"], r)] += 1
    base_facts = {(s, r) for s, r, _, p in facts if p == "base"}
    assert set(stated) == base_facts and set(stated.values()) == {2}  # --statements 2
    counts = Counter(w for line in (out / "base_text.txt").read_text().splitlines() for w in line.split())
    assert all(counts[name] >= 2 for name in info["entities"]), "every entity is mentioned, whatever its partition"


@pytest.mark.parametrize("k", [4, W.DEFAULT_TRAIN_TEMPLATES])
def test_template_splits_are_disjoint_and_use_known_words(k):
    templates = W.World(1, W.DEFAULT_SIZES, 1, 0, train_templates=k).templates
    known = {w for _, _, train, _ in templates.values() for t in train for w in t.split()}
    known |= {w for f in W.MENTION_FRAMES for w in f.split()}
    assert len(templates) == 8
    for relation, (_, _, train, heldout) in templates.items():
        assert len(train) == k
        assert len(train) >= 2 and len(heldout) >= 1
        assert not set(train) & set(heldout), relation
        for t in train + heldout:
            assert t.count("[X]") == 1 and t.count("[Y]") == 1
        for t in heldout:  # a held-out paraphrase recombines words the base has seen
            assert set(t.split()) - {"[X]", "[Y]"} <= known, (relation, t)


def test_written_templates_match_the_split(small):
    out, _ = small
    train = [json.loads(line) for line in (out / "relations.jsonl").read_text().splitlines()]
    held = [json.loads(line) for line in (out / "probe_templates.jsonl").read_text().splitlines()]
    assert not {(r["relation"], r["template"]) for r in train} & {(r["relation"], r["template"]) for r in held}
    assert {r["relation"] for r in train} == {r["relation"] for r in held} == set(W.RELATIONS)


def test_names_are_invented_distinct_and_typeless(small):
    _, info = small
    names = list(info["entities"])
    assert len(set(n.lower() for n in names)) == len(names)
    english = set()
    for path in glob.glob(os.path.join(REPO, "examples", "data", "**", "*"), recursive=True):
        if os.path.isfile(path) and os.path.getsize(path) < 5_000_000 and not path.endswith((".png", ".bin")):
            with open(path, encoding="utf-8", errors="ignore") as f:
                english.update(w.lower() for w in re.findall(r"[A-Za-z]+", f.read()))
    assert len(english) > 5000, "the English sample text is missing"
    assert not [n for n in names if n.lower() in english]
    # one generator for all types: the same syllable shape whatever the type
    shape = re.compile(r"^(?:(?:[bdfgklmnprstvz]|br|dr|kr|tr|st|pl)[aeiou]){3}[nrlksm]?$")
    assert all(shape.match(n.lower()) for n in names)
    for etype in W.TYPES:
        lengths = [len(n) for n, d in info["entities"].items() if d["type"] == etype]
        assert 6 <= min(lengths) and max(lengths) <= 10


def test_majority_baseline_by_hand(small):
    out, info = small
    facts = read_tsv(out / "triples.tsv")
    for part in W.PARTITIONS:
        for relation in W.RELATIONS:
            objects = Counter(o for s, r, o, p in facts if p == part and r == relation)
            if not objects:
                continue
            m = info["majority"][part][relation]
            assert m["n"] == sum(objects.values()) and m["rate"] == max(objects.values()) / m["n"]


def test_shuffled_control_permutes_only_trained_objects(small):
    out, _ = small
    true, shuffled = read_tsv(out / "triples.tsv"), read_tsv(out / "triples_shuffled.tsv")
    assert [(s, r, p) for s, r, _, p in true] == [(s, r, p) for s, r, _, p in shuffled]
    for (s, r, o, p), (_, _, o2, _) in zip(true, shuffled):
        if p != W.TRAINED_PARTITION:
            assert o == o2
    for relation in W.RELATIONS:
        a = Counter(o for s, r, o, p in true if r == relation and p == W.TRAINED_PARTITION)
        b = Counter(o for s, r, o, p in shuffled if r == relation and p == W.TRAINED_PARTITION)
        assert a == b  # same objects, other subjects
    assert sum(o != o2 for (_, _, o, _), (_, _, o2, _) in zip(true, shuffled)) > 0


def test_downstream_pairs_are_neutral_labelled_by_the_facts_and_split_by_pair(small):
    out, info = small
    facts = {(s, o): r for s, r, o, _ in read_tsv(out / "triples.tsv")}
    entities = info["entities"]
    frames = [f.split() for f in W.PAIR_FRAMES]
    pairs = {}
    for split in ("train", "valid", "test"):
        records = json.loads((out / "downstream" / f"{split}.json").read_text())
        assert records
        for rec in records:
            s, o = rec["token"][rec["subj_start"]], rec["token"][rec["obj_start"]]
            assert rec["subj_end"] == rec["subj_start"] and rec["obj_end"] == rec["obj_start"]
            assert rec["relation"] == facts.get((s, o), "no_relation")
            assert rec["partition"] == entities[s]["partition"]
            if rec["relation"] == "no_relation":  # a same-type unrelated pair: the types alone cannot tell
                assert any(entities[o]["type"] == W.RELATIONS[r][1] for (s2, _), r in facts.items() if s2 == s)
            words = ["[S]" if i == rec["subj_start"] else "[O]" if i == rec["obj_start"] else w for i, w in enumerate(rec["token"])]
            assert words in frames
            pairs.setdefault(frozenset((s, o)), []).append(split)
    assert all(len(v) == 1 for v in pairs.values()), "a pair (either way round) is in one split only"
    test = json.loads((out / "downstream" / "test.json").read_text())
    for part in W.PARTITIONS:
        by_part = json.loads((out / "downstream" / f"test_{part}.json").read_text())
        assert by_part == [r for r in test if r["partition"] == part] and by_part


def test_single_piece_vocab_size_makes_every_name_one_piece(small, tmp_path):
    import sentencepiece as spm

    from kadapter_fairseq.tools.build_base import split_lines
    from kadapter_fairseq.tools.tiny_base import train_sentencepiece

    out, info = small
    lines = (out / "base_text.txt").read_text().splitlines()
    size, split = W.single_piece_vocab_size(lines, list(info["entities"]), 400, seed=1, valid_fraction=0.01, step=50)
    assert split == [] and size >= 400
    train, _ = split_lines(lines, 0.01, 1)
    train_sentencepiece(train, str(tmp_path / "sp"), size)
    proc = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    assert all(proc.encode(n, out_type=str) == ["\u2581" + n] for n in info["entities"])
