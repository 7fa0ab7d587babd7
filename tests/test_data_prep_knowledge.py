"""Knowledge pre-training converters: hand-worked examples and bad input."""
import json
import os

import pytest

from data_prep.common import SkipCounter, read_json_records, seeded_split
from data_prep.conllu import read_conllu
from data_prep.dependency import DependencyExample, encode_dependency, tree_problem, write_dependency_dataset
from data_prep.fewrel import fewrel_examples
from data_prep.relations import RelationExample, Skip, encode_relation, filter_relations, write_relation_dataset
from data_prep.trex import document_examples, split_sentences
from kadapter_fairseq.data.encoding import IGNORE_INDEX, WordEncoder
from kadapter_fairseq.errors import DataError

from conftest import shared_data

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "knowledge")


class ChunkBPE:
    """A stand-in BPE with hand-computable output: '▁' for a leading space, then 3-character pieces."""

    def encode(self, text):
        text = text.replace(" ", "\u2581")
        return " ".join(text[i:i + 3] for i in range(0, len(text), 3))


ENC = WordEncoder(ChunkBPE())
OBAMA = ["Barack", "Obama", "was", "born", "in", "Hawaii", "."]


def rel(words, subj, obj, relation="P19", id="x"):
    return RelationExample(id=id, words=words, subject=subj, object=obj, relation=relation, where=f"f:{id}")


# ----------------------------------------------------------------------------- relations


def test_marker_positions_after_bpe_hand_worked():
    # pieces: @ | ▁Ba rac k | ▁Ob ama | ▁@ | ▁wa s | ▁bo rn | ▁in | ▁# | ▁Ha wai i | ▁# | ▁.
    enc = encode_relation(ENC, rel(OBAMA, (0, 2), (5, 6)), max_len=64)
    assert enc.pieces[:4] == ["@", "\u2581Ba", "rac", "k"]
    assert enc.positions == (1, 13)  # <s> is position 0
    assert enc.pieces[13 - 1] == "\u2581#"
    assert not enc.truncated


def test_object_before_subject_keeps_order_of_text():
    enc = encode_relation(ENC, rel(OBAMA, (5, 6), (0, 2)), max_len=64)
    # now '#' wraps Barack Obama (first) and '@' wraps Hawaii
    assert enc.pieces[enc.positions[1] - 1] == "#"
    assert enc.pieces[enc.positions[0] - 1] == "\u2581@"
    assert enc.positions[1] == 1


def test_truncation_keeps_both_mentions():
    words = ["filler"] * 30 + OBAMA + ["filler"] * 30
    enc = encode_relation(ENC, rel(words, (30, 32), (35, 36)), max_len=24)
    assert enc.truncated and len(enc.pieces) == 22
    assert enc.pieces[enc.positions[0] - 1] == "\u2581@"
    assert enc.pieces[enc.positions[1] - 1] == "\u2581#"
    with pytest.raises(Skip) as e:
        encode_relation(ENC, rel(words, (30, 32), (35, 36)), max_len=24, long="skip")
    assert e.value.reason == "too_long"


def test_mentions_too_far_apart_and_overlap_are_skips():
    words = ["Obama"] + ["filler"] * 40 + ["Hawaii"]
    with pytest.raises(Skip) as e:
        encode_relation(ENC, rel(words, (0, 1), (41, 42)), max_len=32)
    assert e.value.reason == "mentions_too_far_apart_for_max_len"
    with pytest.raises(Skip) as e:
        encode_relation(ENC, rel(OBAMA, (0, 2), (1, 3)), max_len=64)
    assert e.value.reason == "overlapping_mentions"


def test_min_count_and_excluded_relations_are_counted():
    examples = [rel(OBAMA, (0, 2), (5, 6), "P19", str(i)) for i in range(3)]
    examples += [rel(OBAMA, (0, 2), (5, 6), "P31", "a"), rel(OBAMA, (0, 2), (5, 6), "P27", "b")]
    counter = SkipCounter()
    kept = filter_relations(examples, counter, min_count=2, drop=["P31"])
    assert [e.relation for e in kept] == ["P19"] * 3
    assert counter.skipped == {"relation_excluded_P31": 1, "relation_below_min_count_2": 1}


# ----------------------------------------------------------------------------- T-REx


def trex_doc(triples, text="Barack Obama was born in Hawaii. He was a president of the U.S. until 2017."):
    return {"docid": "d1", "text": text, "triples": triples}


def triple(subj, obj, pred="P19", sid=0):
    text = trex_doc([])["text"]

    def mention(b):
        return {"boundaries": b, "surfaceform": text[b[0]:b[1]] if b and all(isinstance(x, int) for x in b) else "?"}

    return {"subject": mention(subj), "object": mention(obj),
            "predicate": {"uri": f"http://www.wikidata.org/prop/direct/{pred}"}, "sentence_id": sid}


def test_trex_document_hand_worked():
    counter = SkipCounter()
    doc = trex_doc([triple([0, 12], [25, 31])])
    (ex,) = document_examples(doc, "t.json", 7, counter)
    assert ex.words == ["Barack", "Obama", "was", "born", "in", "Hawaii", "."]
    assert ex.subject == (0, 2) and ex.object == (5, 6) and ex.relation == "P19"
    assert ex.where == "t.json:7" and ex.id == "d1:0"


def test_trex_bad_triples_are_counted_skips():
    doc = trex_doc([
        triple([0, 12], [500, 506]),  # boundaries outside the text
        triple([0, 12], [57, 61]),  # object "U.S." sits in the second sentence
        triple([0, 12], [25, 30]),  # "Hawai": not on a word boundary
        triple([0, 12], None),  # no boundaries
    ])
    counter = SkipCounter()
    assert document_examples(doc, "t.json", 3, counter) == []
    assert counter.skipped == {
        "boundaries_outside_text": 1,
        "mentions_in_different_sentences": 1,
        "mention_not_word_aligned": 1,
        "mention_without_boundaries": 1,
    }
    assert counter.examples["boundaries_outside_text"] == ["t.json:3"]
    assert "boundaries_outside_text" in counter.summary()


def test_trex_structural_errors_name_file_and_line():
    with pytest.raises(DataError, match=r"t\.json:4: .*boundaries must be"):
        document_examples(trex_doc([triple([0, "x"], [25, 31])]), "t.json", 4, SkipCounter())
    with pytest.raises(DataError, match=r"t\.json:5: not a T-REx document"):
        document_examples({"text": "x"}, "t.json", 5, SkipCounter())


def test_sentence_splitter_keeps_abbreviations_and_initials():
    text = "Dr. J. Smith went to the U.S. in 1990. He stayed.\nThen he left!"
    spans = split_sentences(text)
    assert [text[a:b] for a, b in spans] == ["Dr. J. Smith went to the U.S. in 1990.", "He stayed.", "Then he left!"]


def test_malformed_json_lines_name_the_line(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"a": 1}\n{"a": 2,}\n')
    records = read_json_records(str(path))
    assert next(records) == (1, {"a": 1})
    with pytest.raises(DataError, match=r"docs\.jsonl:2: malformed JSON"):
        next(records)


def test_json_array_records_carry_their_line(tmp_path):
    path = tmp_path / "docs.json"
    path.write_text('[\n  {"a": 1},\n\n  {"a": 2}\n]\n')
    assert list(read_json_records(str(path))) == [(2, {"a": 1}), (4, {"a": 2})]
    path.write_text('[\n  {"a": 1},\n  {"a" 2}\n]\n')
    with pytest.raises(DataError, match=r"docs\.json:3: malformed JSON"):
        list(read_json_records(str(path)))


def test_seeded_split_is_deterministic_and_order_free():
    keys = [f"k{i}" for i in range(100)]
    a = seeded_split(keys, 0.1, seed=1)
    assert len(a) == 10 and a == seeded_split(reversed(keys), 0.1, seed=1)
    assert a != seeded_split(keys, 0.1, seed=2)


# ----------------------------------------------------------------------------- FewRel


def test_fewrel_examples_and_bad_records():
    data = {"P19": [
        {"tokens": OBAMA, "h": ["barack obama", "Q76", [[0, 1]]], "t": ["hawaii", "Q782", [[5]]]},
        {"tokens": OBAMA, "h": ["barack obama", "Q76", [[0, 2]]], "t": ["hawaii", "Q782", [[5]]]},
    ]}
    counter = SkipCounter()
    (ex,) = fewrel_examples(data, "few.json", counter)
    assert ex.subject == (0, 2) and ex.object == (5, 6) and ex.id == "P19[0]"
    assert counter.skipped == {"discontiguous_mention": 1}
    with pytest.raises(DataError, match=r"few\.json:P19\[0\]: instance needs"):
        fewrel_examples({"P19": [{"tokens": OBAMA}]}, "few.json", SkipCounter())


def test_fewrel_real_sample():
    path = shared_data("fewrel", "val_wiki.json")
    from data_prep.common import load_json

    counter = SkipCounter()
    examples = fewrel_examples(load_json(path), path, counter)
    assert len(examples) + counter.total_skipped == 11200
    assert len({e.relation for e in examples}) == 16


def test_trex_real_sample_counts():
    path = shared_data("trex", "rebel_sample.jsonl")
    counter = SkipCounter()
    examples = []
    for line, doc in read_json_records(path):
        examples.extend(document_examples(doc, path, line, counter))
    assert len(examples) + counter.total_skipped == 2868  # every triple is kept or counted
    assert counter.skipped["mentions_in_different_sentences"] > 0
    for ex in examples[:200]:
        assert 0 <= ex.subject[0] < ex.subject[1] <= len(ex.words)


# ----------------------------------------------------------------------------- dependency


def test_head_pointers_with_split_words_hand_worked():
    # Obama -> Oba ma (positions 1, 2); " was" -> ▁wa s (3, 4); " born" -> ▁bo rn (5, 6); </s> = 7
    ex = DependencyExample("s", ["Obama", "was", "born"], [3, 3, 0], "f:1")
    pieces, labels, truncated = encode_dependency(ENC, ex, max_len=64)
    assert pieces == ["Oba", "ma", "\u2581wa", "s", "\u2581bo", "rn"]
    assert labels == [IGNORE_INDEX, 5, IGNORE_INDEX, 5, IGNORE_INDEX, 0, IGNORE_INDEX, IGNORE_INDEX]
    assert not truncated


def test_tree_checks():
    assert tree_problem([3, 4, 0, 1]) is None  # crossing arcs (non-projective) are a valid tree
    assert tree_problem([2, 1, 0]) == "cyclic_heads"
    assert tree_problem([1, 0]) == "cyclic_heads"  # self-loop
    assert tree_problem([2, 3, 1]) == "no_root"
    assert tree_problem([0, 0]) == "several_roots"
    assert tree_problem([5, 0]) == "head_out_of_range"
    assert tree_problem([]) == "empty_sentence"


def test_long_sentence_skipped_or_truncated():
    words = ["aaa"] * 10  # "aaa" then "▁aaa" -> "▁aa" "a": 1 + 9*2 = 19 pieces
    heads = [0] + [1] * 8 + [2]
    ex = DependencyExample("s", words, heads, "f:1")
    assert encode_dependency(ENC, ex, max_len=12) == "too_long_for_max_len_12"
    pieces, labels, truncated = encode_dependency(ENC, ex, max_len=12, long="truncate")
    # 10 pieces fit: "aaa" + 4 whole words of two pieces + one cut -> 5 words, 9 pieces
    assert truncated and len(pieces) == 9 and len(labels) == 11
    assert labels[1] == 0 and labels[2] == 1 and labels[4] == 1


def test_truncation_drops_labels_whose_head_was_cut():
    ex = DependencyExample("s", ["aaa", "aaa", "aaa"], [3, 3, 0], "f:1")
    pieces, labels, _ = encode_dependency(ENC, ex, max_len=6, long="truncate")
    assert len(pieces) == 3  # two words kept
    assert labels == [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]


def test_conllu_reader_fixture():
    counter = SkipCounter()
    examples = list(read_conllu(os.path.join(FIXTURES, "small.conllu"), counter))
    assert [e.id for e in examples] == ["mwt-1", "nonprojective-2", "cyclic-4"]
    assert examples[0].words == ["I", "do", "n't", "know", "."]  # the 2-3 range line is left out
    assert examples[1].heads == [2, 4, 4, 0, 7, 7, 2, 4, 4]  # 8.1 empty node left out
    assert counter.skipped == {"empty_sentence": 1}
    assert tree_problem(examples[1].heads) is None
    assert tree_problem(examples[2].heads) == "cyclic_heads"


@pytest.mark.parametrize(
    "line, message",
    [
        ("1\tDogs\tdog\tNOUN\tNNS\t_\t2\tnsubj\t_", "10 tab-separated columns, found 9"),
        ("1\tDogs\tdog\tNOUN\tNNS\t_\tX\tnsubj\t_\t_", "HEAD must be a non-negative integer"),
        ("2\tDogs\tdog\tNOUN\tNNS\t_\t0\troot\t_\t_", "out of sequence"),
        ("a\tDogs\tdog\tNOUN\tNNS\t_\t0\troot\t_\t_", "ID must be an integer"),
    ],
)
def test_malformed_conllu_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.conllu"
    path.write_text("# sent_id = a\n1\tOk\tok\tX\tX\t_\t0\troot\t_\t_\n\n# sent_id = b\n" + line + "\n\n")
    with pytest.raises(DataError, match=rf"bad\.conllu:5: .*{message}"):
        list(read_conllu(str(path), SkipCounter()))


def test_ud_ewt_real_sample():
    path = shared_data("ud_english_ewt", "en_ewt-ud-dev.conllu")
    counter = SkipCounter()
    examples = list(read_conllu(path, counter))
    assert len(examples) == 2001
    assert all(tree_problem(e.heads) is None for e in examples)


def test_spacy_parse_gives_trees():
    pytest.importorskip("spacy", reason="spaCy is not installed (optional extra [spacy])")
    from data_prep.spacy_parse import load_spacy, parse_lines

    try:
        nlp = load_spacy()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no spaCy English model installed: {e}")
    counter = SkipCounter()
    examples = parse_lines(nlp, [("t.txt", 1, "The dog barks loudly. It ran away.")], counter)
    assert [e.words for e in examples] == [["The", "dog", "barks", "loudly", "."], ["It", "ran", "away", "."]]
    first = examples[0]
    assert first.heads[2] == 0 and first.heads[1] == 3 and first.heads[0] == 2  # barks is root, dog its subject
    assert all(tree_problem(e.heads) is None for e in examples)


# ----------------------------------------------------------------------------- binarized output


def test_relation_dataset_skips_relation_missing_from_label_set(tmp_path, tiny_base):
    from kadapter_fairseq.bpe import find_bpe_files, load_bpe

    enc = WordEncoder(load_bpe(find_bpe_files(tiny_base)))
    splits = {
        "train": [rel(OBAMA, (0, 2), (5, 6), "P19", "t1"), rel(OBAMA, (5, 6), (0, 2), "P27", "t2")],
        "valid": [rel(OBAMA, (0, 2), (5, 6), "P19", "v1"), rel(OBAMA, (0, 2), (5, 6), "P999", "v2")],
    }
    counter = SkipCounter()
    out = tmp_path / "rel"
    written = write_relation_dataset(str(out), splits, enc, os.path.join(tiny_base, "dict.txt"), 64, counter)
    assert written == {"train": 2, "valid": 1}
    assert counter.skipped == {"relation_not_in_label_set": 1}
    assert counter.examples["relation_not_in_label_set"] == ["f:v2"]
    assert (out / "labels.txt").read_text().split() == ["P19", "P27"]
    assert (out / "valid.ids").read_text().split() == ["v1"]
    assert (out / "input0" / "train.bin").exists()
    # stored positions point at the markers of the binarized sequence
    from fairseq.data import Dictionary, data_utils

    d = Dictionary.load(str(out / "input0" / "dict.txt"))
    ds = data_utils.load_indexed_dataset(str(out / "input0" / "train"), d)
    for i, line in enumerate((out / "train.positions").read_text().splitlines()):
        p_at, p_hash = map(int, line.split())
        assert d[ds[i][p_at - 1]].endswith("@") and d[ds[i][p_hash - 1]].endswith("#")
    info = json.loads((out / "prep.json").read_text())
    assert info["counts"]["skipped"] == {"relation_not_in_label_set": 1}


def test_dependency_dataset_heads_match_sequence(tmp_path, tiny_base):
    from kadapter_fairseq.bpe import find_bpe_files, load_bpe

    enc = WordEncoder(load_bpe(find_bpe_files(tiny_base)))
    good = DependencyExample("a", ["Obama", "was", "born"], [3, 3, 0], "f:1")
    cyclic = DependencyExample("b", ["Obama", "was"], [2, 1], "f:2")
    counter = SkipCounter()
    out = tmp_path / "dep"
    write_dependency_dataset(str(out), {"train": [good, cyclic], "valid": [good]}, enc,
                             os.path.join(tiny_base, "dict.txt"), 64, counter)
    assert counter.kept == 2 and counter.skipped == {"no_root": 1}
    labels = [int(x) for x in (out / "train.heads").read_text().split()]
    encoded = enc.encode_words(good.words)
    assert len(labels) == len(encoded.pieces) + 2
    assert labels[encoded.position(2)] == 0 and labels[encoded.position(0)] == encoded.position(2)
