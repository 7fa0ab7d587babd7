"""Your own knowledge graph -> knowledge data for an adapter, and probe directories to test it.

    python -m data_prep.kg --triples facts.tsv --relations relations.jsonl \\
        [--probe-templates probe_templates.jsonl] [--train-partitions knowledge] [--holdout-fraction 0.1] \\
        --roberta-dir BASE --out kg

Input:

- ``--triples``: TSV lines ``head<TAB>relation<TAB>tail[<TAB>partition]``, or JSON lines
  ``{"sub_label", "relation", "obj_label"[, "partition"]}`` (by content: a line starting with ``{``);
- ``--relations``: LAMA's ``relations.jsonl`` (``relation``, ``template`` with ``[X]`` = subject and
  ``[Y]`` = object, optional ``label``), one line per template: a relation may have several. These
  *training templates* verbalise the knowledge data;
- ``--probe-templates``: the same format; templates held out for probing only (none may equal a
  training template, and each relation must have training templates).

Partitions. A fact's partition is its fourth field (or ``partition`` key), else ``knowledge``;
``--holdout-fraction F`` moves the facts of about F of the untagged subjects (chosen by a seeded
hash of the subject) to ``heldout``. Facts of the ``--train-partitions`` become knowledge data;
the facts of every partition are probed.

Output (``--out``):

  relation/   relation classification in the layout ``relation_pretrain`` reads (the paper's fac
              objective): every training-partition fact once per training template, subject in
              ``@ ... @``, object in ``# ... #``, labelled with its relation
  mlm/        masked facts for ``knowledge_mlm``: the same sentences, encoded exactly as the LAMA probe
              encodes a query, with the object's position in ``{split}.positions`` (and
              ``{split}.relation``, ``{split}.ids``)
  probe/<set>/<partition>/
              LAMA's layout for ``kadapter-probe lama --corpus TREx --data <dir>``: ``relations.jsonl``
              and ``TREx/<relation>.jsonl``, for ``<set>`` = ``train_templates`` and (with
              ``--probe-templates``) ``probe_templates``. LAMA reads one template per relation, so a
              relation with k > 1 templates in a set becomes k probe relations ``<relation>.t1`` ...
              (``label`` keeps the relation's name), each over the same facts: the macro P@1 of a
              directory averages over relations and templates. ``majority.json`` beside it holds the
              majority baseline (the rate of each relation's most frequent object).
  prep.json   what was read, kept and skipped, by reason

Sentences (fact x training template) are split into train and valid by a seeded hash
(``--valid-fraction``), the same split for ``relation/`` and ``mlm/``. Duplicate triples are
skipped; so are objects that are not one whole-word token of the base, from ``mlm/`` and the probe
(LAMA's rule), and both are counted. Bad input stops with one line naming file and line. The input
is read in passes and never held, as ``data_prep.trex`` reads T-REx: what stays in memory is 8 bytes per
triple (to find repeats) and 8 per training sentence (to choose the seeded split), not the triples.
"""
import argparse
import json
import os
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Dict, Iterator, List, Sequence, Tuple

from kadapter_fairseq.errors import DataError, KAdapterError

from . import common
from .common import SkipCounter, add_tokenizer_args, read_json_records, require_file, run_main, split_hash, tokenizer_from_args
from .relations import LONG_POLICIES, RelationExample, write_relation_dataset

DEFAULT_PARTITION = "knowledge"
HELDOUT_PARTITION = "heldout"
TEMPLATE_SETS = ("train_templates", "probe_templates")
OUTPUTS = ("relation", "mlm", "probe")
SLOTS = ("[X]", "[Y]")
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass
class Template:
    relation: str
    text: str
    label: str
    where: str


@dataclass
class Fact:
    head: str
    relation: str
    tail: str
    partition: str
    where: str  # "path:line"


@dataclass
class MaskedFact:
    """One fact verbalised by one template, for ``mlm/``."""

    id: str
    head: str
    relation: str
    tail: str
    template: str
    where: str


# ---------------------------------------------------------------------------------------------
# reading


def read_templates(path: str) -> "OrderedDict[str, List[Template]]":
    """``{relation: [Template, ...]}`` of a LAMA-style relations file, several lines per relation allowed."""
    require_file(path)
    out: "OrderedDict[str, List[Template]]" = OrderedDict()
    for line, record in read_json_records(path):
        if not isinstance(record, dict):
            raise DataError(path, line, "expected a JSON object with 'relation' and 'template'")
        relation = _name(_field(record, "relation", path, line), "relation", path, line)
        template = _field(record, "template", path, line)
        for slot in SLOTS:
            if template.count(slot) != 1:
                raise DataError(path, line, f"template {template!r} must contain {slot} exactly once")
        known = out.setdefault(relation, [])
        if any(t.text == template for t in known):
            raise DataError(path, line, f"template {template!r} of relation {relation} is given twice")
        label = record.get("label") if isinstance(record.get("label"), str) and record.get("label").strip() else relation
        known.append(Template(relation, template, label, f"{path}:{line}"))
    if not out:
        raise DataError(path, None, "no templates")
    return out


def _field(record: dict, key: str, path, line) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise DataError(path, line, f"{key!r} must be a string" if value is not None else f"no {key!r}")
    if not value.strip():
        raise DataError(path, line, f"empty {key!r}")
    return value.strip()


def _name(value: str, what: str, path, line) -> str:
    """Relations and partitions name probe files and directories."""
    if not NAME_RE.match(value):
        raise DataError(path, line, f"{what} {value!r} cannot name a file: use letters, digits, '_', '-' and '.'")
    return value


def check_probe_templates(probe: Dict[str, List[Template]], train: Dict[str, List[Template]], path: str):
    """Probe templates are held out: each names a trained relation and differs from its training templates."""
    for relation, templates in probe.items():
        for t in templates:
            line = t.where.rsplit(":", 1)[1]
            if relation not in train:
                raise DataError(path, line, f"relation {relation} has no training template in the relations file")
            if any(t.text == u.text for u in train[relation]):
                raise DataError(path, line, f"template {t.text!r} is also a training template of {relation}: "
                                            "a probe template must be held out")


def read_triples(paths: Sequence[str], relations: Dict[str, List[Template]], holdout_fraction: float = 0.0,
                 seed: int = 1) -> Iterator[Fact]:
    """Every triple of ``paths`` in order, checked; a bad line stops with its file and line."""
    cutoff = int(holdout_fraction * 2 ** 64)
    for path in paths:
        require_file(path)
        with open(path, encoding="utf-8-sig") as f:
            for line, text in enumerate(f, 1):
                if not text.strip():
                    continue
                if text.lstrip().startswith("{"):
                    fields = _json_fields(text, path, line)
                else:
                    fields = text.rstrip("\r\n").split("\t")
                    if len(fields) not in (3, 4):
                        raise DataError(path, line, f"expected head<TAB>relation<TAB>tail[<TAB>partition], got {len(fields)} "
                                                    "tab-separated fields")
                    names = ("head", "relation", "tail", "partition")
                    for name, value in zip(names, fields):
                        if not value.strip():
                            raise DataError(path, line, f"empty {name}")
                    fields = [v.strip() for v in fields]
                head, relation, tail = fields[:3]
                if relation not in relations:
                    raise DataError(path, line, f"relation {relation!r} is not in the relations file: no template verbalises it")
                if len(fields) == 4:
                    partition = _name(fields[3], "partition", path, line)
                elif cutoff and split_hash(head, seed) < cutoff:
                    partition = HELDOUT_PARTITION
                else:
                    partition = DEFAULT_PARTITION
                yield Fact(head, relation, tail, partition, f"{path}:{line}")


def _json_fields(text: str, path, line) -> List[str]:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, line, f"malformed JSON: the line is not valid JSON ({e.msg}, column {e.colno})") from None
    if not isinstance(record, dict):
        raise DataError(path, line, "expected a JSON object {sub_label, relation, obj_label}")
    fields = [_field(record, key, path, line) for key in ("sub_label", "relation", "obj_label")]
    if "partition" in record:
        fields.append(_field(record, "partition", path, line))
    return fields


def triple_hash(fact: Fact) -> int:
    return split_hash(f"{fact.head}\t{fact.relation}\t{fact.tail}", 0)


def sentence_key(fact: Fact, k: int) -> str:
    return f"{fact.head}\t{fact.relation}\t{fact.tail}\t{k}"


# ---------------------------------------------------------------------------------------------
# verbalising


def template_words(template: str, head: str, tail: str) -> Tuple[List[str], Tuple[int, int], Tuple[int, int]]:
    """The template as words with [X] and [Y] filled: ``(words, subject span, object span)``. A slot
    glued to text (``[X]'s``) becomes a word of its own."""
    words, spans = [], {}
    for token in template.split():
        while token:
            cuts = [(token.find(s), s) for s in SLOTS if s in token]
            if not cuts:
                words.append(token)
                break
            at, slot = min(cuts)
            if at:
                words.append(token[:at])
            filler = (head if slot == "[X]" else tail).split()
            spans[slot] = (len(words), len(words) + len(filler))
            words.extend(filler)
            token = token[at + len(slot):]
    return words, spans["[X]"], spans["[Y]"]


def _encode_masked_fact(item, vocab, max_len):
    """One ``(split, MaskedFact)``: a skip reason, or its pieces (the probe's query encoding with the
    object in place of the mask), side lines (object position, relation, id) and no truncation."""
    from kadapter_fairseq.probe.lama import template_query

    ex = item[1]
    gold, reason = vocab.object_candidate(ex.tail)
    if reason is not None:
        return reason
    tokens = vocab.encode_sentence(template_query(ex.template, ex.head), first=True)
    if len(tokens) > max_len:
        return f"too_long_for_max_len_{max_len}"
    position = int(tokens.eq(vocab.mask_idx).nonzero()[0])
    ids = tokens.tolist()
    ids[position] = int(vocab.candidates[gold])
    pieces = [vocab.dictionary[i] for i in ids[1:-1]]  # fairseq-preprocess adds </s>, the task <s>
    return " ".join(pieces), (str(position), ex.relation, ex.id), False


# ---------------------------------------------------------------------------------------------
# the converter


class KnowledgeGraph:
    """The checked input, and what a first pass over it found (duplicates, partitions, objects)."""

    def __init__(self, args, vocab):
        self.args = args
        self.vocab = vocab
        self.relations = read_templates(args.relations)
        self.probe = OrderedDict()
        if args.probe_templates:
            self.probe = read_templates(args.probe_templates)
            check_probe_templates(self.probe, self.relations, args.probe_templates)
        self.train_partitions = [p for p in args.train_partitions.split(",") if p]
        self.reading = SkipCounter()
        self._first_pass()

    def facts(self) -> Iterator[Tuple[int, Fact]]:
        """``(index, fact)`` of every triple read, in input order."""
        return enumerate(read_triples(self.args.triples, self.relations, self.args.holdout_fraction, self.args.seed))

    def kept(self) -> Iterator[Fact]:
        """Every triple but repeats of an earlier one."""
        for i, fact in self.facts():
            if not self.duplicate[i]:
                yield fact

    def _first_pass(self):
        import numpy as np
        from array import array

        hashes, sentence_hashes = array("Q"), array("Q")
        self.partitions: Counter = Counter()
        self.label_counts: Counter = Counter()
        for _, fact in self.facts():
            hashes.append(triple_hash(fact))
        arr = np.frombuffer(hashes, dtype=np.uint64) if hashes else np.zeros(0, np.uint64)
        _, first = np.unique(arr, return_index=True)
        self.duplicate = np.ones(len(arr), dtype=bool)
        self.duplicate[first] = False
        if not len(arr):
            raise DataError(self.args.triples[0], None, "no triples")
        for i, fact in self.facts():
            if self.duplicate[i]:
                self.reading.skip("duplicate_triple", fact.where)
                continue
            self.reading.keep()
            self.partitions[fact.partition] += 1
            if fact.partition in self.train_partitions:
                for k in range(len(self.relations[fact.relation])):
                    sentence_hashes.append(split_hash(sentence_key(fact, k), self.args.seed))
                    self.label_counts[fact.relation] += 1
        missing = [p for p in self.train_partitions if not self.partitions[p]]
        if missing:
            raise KAdapterError(f"--train-partitions {','.join(missing)}: no fact is in that partition "
                                f"(partitions found: {', '.join(sorted(self.partitions)) or 'none'})")
        self.valid_cutoff = common.valid_hash_cutoff(sentence_hashes, self.args.valid_fraction)

    # ------------------------------------------------------------------------------------------

    def split_of(self, fact: Fact, k: int) -> str:
        h = split_hash(sentence_key(fact, k), self.args.seed)
        return "valid" if self.valid_cutoff is not None and h <= self.valid_cutoff else "train"

    def splits(self):
        return ["train", "valid"] if self.valid_cutoff is not None else ["train"]

    def training_sentences(self) -> Iterator[Tuple[str, Fact, int, Template]]:
        for fact in self.kept():
            if fact.partition in self.train_partitions:
                for k, template in enumerate(self.relations[fact.relation]):
                    yield self.split_of(fact, k), fact, k, template

    def relation_stream(self):
        def pairs():
            for split, fact, k, template in self.training_sentences():
                words, subj, obj = template_words(template.text, fact.head, fact.tail)
                yield split, RelationExample(id=f"{fact.where}#t{k + 1}", words=words, subject=subj, object=obj,
                                             relation=fact.relation, where=fact.where)
        return common.SplitStream(self.splits(), pairs())

    def mlm_stream(self):
        def pairs():
            for split, fact, k, template in self.training_sentences():
                yield split, MaskedFact(f"{fact.where}#t{k + 1}", fact.head, fact.relation, fact.tail, template.text, fact.where)
        return common.SplitStream(self.splits(), pairs())

    def template_sets(self) -> Dict[str, "OrderedDict[str, List[Template]]"]:
        sets = {"train_templates": self.relations}
        if self.probe:
            sets["probe_templates"] = self.probe
        return sets


def write_probe(kg: KnowledgeGraph, out_dir: str, counter: SkipCounter) -> dict:
    """``out_dir/<set>/<partition>/`` in LAMA's layout, with ``majority.json``; returns what was written."""
    import shutil

    from kadapter_fairseq.atomic import write_json

    sets = kg.template_sets()
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)  # a stale relation file would be probed as if it were new
    first_set = next(iter(sets))
    objects: Dict[Tuple[str, str], Counter] = {}
    with AppendFiles() as files:
        for fact in kg.kept():
            _, reason = kg.vocab.object_candidate(fact.tail)
            if reason is not None:
                counter.skip(reason, fact.where)
                continue
            counter.keep()
            objects.setdefault((fact.partition, fact.relation), Counter())[fact.tail] += 1
            line = json.dumps({"uuid": fact.where, "sub_label": fact.head, "obj_label": fact.tail,
                               "relation": fact.relation, "partition": fact.partition}, ensure_ascii=False)
            files.write(os.path.join(out_dir, first_set, fact.partition, "facts", f"{fact.relation}.jsonl"), line)
    partitions = sorted({p for p, _ in objects})
    written = {}
    for set_name, templates in sets.items():
        written[set_name] = {}
        for partition in partitions:
            d = os.path.join(out_dir, set_name, partition)
            os.makedirs(os.path.join(d, "TREx"), exist_ok=True)
            source = os.path.join(out_dir, first_set, partition, "facts")
            lines, majority = [], {}
            for relation, rel_templates in templates.items():
                counts = objects.get((partition, relation))
                if not counts:
                    continue
                n = sum(counts.values())
                top_object, top = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
                for k, t in enumerate(rel_templates, 1):
                    name = relation if len(rel_templates) == 1 else f"{relation}.t{k}"
                    lines.append(json.dumps({"relation": name, "template": t.text, "label": t.label}, ensure_ascii=False))
                    _link(os.path.join(source, f"{relation}.jsonl"), os.path.join(d, "TREx", f"{name}.jsonl"))
                    majority[name] = {"relation": relation, "object": top_object, "rate": top / n, "n": n}
            common.write_lines(os.path.join(d, "relations.jsonl"), lines)
            rates = [m["rate"] for m in majority.values()]
            write_json(os.path.join(d, "majority.json"), {
                "definition": "per probe relation, the rate of its most frequent object among the probed facts",
                "relations": majority, "macro": sum(rates) / len(rates) if rates else None,
            })
            written[set_name][partition] = {"dir": d, "relations": len(majority), "facts": sum(
                objects[(partition, r)].total() for r in templates if (partition, r) in objects)}
    for partition in partitions:
        shutil.rmtree(os.path.join(out_dir, first_set, partition, "facts"))
    return written


def _link(src: str, dst: str):
    """The same fact file under another probe relation's name: a hard link where the file system has them."""
    try:
        os.link(src, dst)
    except OSError:
        import shutil

        shutil.copyfile(src, dst)


class AppendFiles:
    """Lines appended to many files as facts stream by, with at most ``max_open`` open at once."""

    def __init__(self, max_open: int = 64):
        self.max_open = max_open
        self.open: "OrderedDict[str, object]" = OrderedDict()

    def write(self, path: str, line: str):
        f = self.open.pop(path, None)
        if f is None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            f = open(path, "a", encoding="utf-8")
            if len(self.open) >= self.max_open:
                self.open.popitem(last=False)[1].close()
        self.open[path] = f
        f.write(line + "\n")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for f in self.open.values():
            f.close()


def majority_baseline(probe_dir: str) -> dict:
    """The ``majority.json`` of a probe directory written here (``relations`` and ``macro``)."""
    path = os.path.join(probe_dir, "majority.json")
    if not os.path.isfile(path):
        raise DataError(path, None, "no majority baseline: not a probe directory written by data_prep.kg")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------


def build_parser():
    p = argparse.ArgumentParser(prog="python -m data_prep.kg", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--triples", nargs="+", required=True, help="TSV (head, relation, tail[, partition]) or JSON-lines triple files")
    p.add_argument("--relations", required=True, help="LAMA-style relations.jsonl: the training templates")
    p.add_argument("--probe-templates", help="LAMA-style relations.jsonl of held-out templates, for probing only")
    p.add_argument("--train-partitions", default=DEFAULT_PARTITION,
                   help=f"comma-separated partitions whose facts become knowledge data (default {DEFAULT_PARTITION})")
    p.add_argument("--holdout-fraction", type=float, default=0.0,
                   help=f"move the facts of about this share of untagged subjects to partition {HELDOUT_PARTITION!r}")
    p.add_argument("--outputs", default=",".join(OUTPUTS), help=f"which of {','.join(OUTPUTS)} to write (default all)")
    p.add_argument("--out", required=True, help="output directory (relation/, mlm/, probe/, prep.json)")
    p.add_argument("--max-len", type=int, default=64, help="positions per sentence incl. <s> and </s> (default 64)")
    p.add_argument("--long", choices=LONG_POLICIES, default="truncate", help="over-long relation sentences: cut or skip")
    p.add_argument("--valid-fraction", type=float, default=0.1, help="share of training sentences for valid (default 0.1)")
    p.add_argument("--seed", type=int, default=1, help="seed of the train/valid split and of --holdout-fraction")
    add_tokenizer_args(p)
    return p


def convert(args) -> dict:
    from kadapter_fairseq.atomic import write_json
    from kadapter_fairseq.data.dictionary import load_roberta_dictionary
    from kadapter_fairseq.data.encoding import WordEncoder
    from kadapter_fairseq.data.labels import LabelVocabulary
    from kadapter_fairseq.probe.lama import Vocabulary

    outputs = [o for o in args.outputs.split(",") if o]
    unknown = set(outputs) - set(OUTPUTS)
    if unknown or not outputs:
        raise KAdapterError(f"--outputs: choose from {','.join(OUTPUTS)}, got {args.outputs!r}")
    if not 0.0 <= args.holdout_fraction < 1.0:
        raise KAdapterError(f"--holdout-fraction must be in [0, 1): {args.holdout_fraction}")
    bpe, bpe_files, dict_path = tokenizer_from_args(args)
    vocab = Vocabulary(load_roberta_dictionary(dict_path), bpe)
    kg = KnowledgeGraph(args, vocab)
    print(kg.reading.summary("triples"))
    print("partitions: " + ", ".join(f"{p} {n}" for p, n in sorted(kg.partitions.items()))
          + f"; trained: {','.join(kg.train_partitions)}")
    os.makedirs(args.out, exist_ok=True)
    info = {
        "converter": "data_prep.kg", "triples": args.triples, "relations": args.relations,
        "probe_templates": args.probe_templates, "train_partitions": kg.train_partitions,
        "holdout_fraction": args.holdout_fraction, "seed": args.seed, "valid_fraction": args.valid_fraction,
        "tokenizer": bpe_files.as_args(), "dict": dict_path,
        "templates": {s: {r: [t.text for t in ts] for r, ts in templates.items()} for s, templates in kg.template_sets().items()},
        "reading": kg.reading.as_dict(), "partitions": dict(kg.partitions), "outputs": {},
    }
    shared = {"converter": "data_prep.kg", "sources": args.triples, "train_partitions": kg.train_partitions,
              "tokenizer": bpe_files.as_args(), "dict": dict_path, "valid_fraction": args.valid_fraction, "seed": args.seed}
    if "relation" in outputs:
        counter = SkipCounter()
        labels = LabelVocabulary(sorted(kg.label_counts, key=lambda r: (-kg.label_counts[r], r)))
        written = write_relation_dataset(os.path.join(args.out, "relation"), kg.relation_stream(), WordEncoder(bpe),
                                         dict_path, args.max_len, counter, long=args.long, labels=labels,
                                         workers=args.workers, prep_info=shared)
        print(counter.summary("relation classification sentences") + f"\n  written {written} -> {args.out}/relation")
        info["outputs"]["relation"] = {"examples": written, "counts": counter.as_dict()}
    if "mlm" in outputs:
        counter = SkipCounter()
        written = common.write_encoded_dataset(
            os.path.join(args.out, "mlm"), kg.mlm_stream(), _encode_masked_fact, dict_path, counter,
            ("positions", "relation", "ids"), {"task": "knowledge_mlm", "max_len": args.max_len}, workers=args.workers,
            prep_info=shared, what="masked fact", vocab=vocab, max_len=args.max_len,
        )
        print(counter.summary("masked-fact sentences") + f"\n  written {written} -> {args.out}/mlm")
        info["outputs"]["mlm"] = {"examples": written, "counts": counter.as_dict()}
    if "probe" in outputs:
        counter = SkipCounter()
        written = write_probe(kg, os.path.join(args.out, "probe"), counter)
        print(counter.summary("probe facts"))
        for set_name, parts in written.items():
            for partition, w in parts.items():
                print(f"  {w['dir']}: {w['facts']} facts, {w['relations']} probe relations")
        info["outputs"]["probe"] = {"directories": written, "counts": counter.as_dict()}
    write_json(os.path.join(args.out, "prep.json"), info, sort_keys=True)
    return info


def main(argv=None):
    convert(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    run_main(main)
