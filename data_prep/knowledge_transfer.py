"""FewRel val_wiki -> the data of the knowledge-transfer study (docs/studies/knowledge_transfer.md).

Writes, into ``--out`` (default ``examples/data/fewrel/knowledge_transfer``, shipped with the
project so the study runs on a fresh clone):

  pretrain_fac.json        FewRel format, relations A: what the fac adapter learns
  pretrain_shuffled.json   the same instances, their relation labels permuted (seeded): same text,
                           no relation-sentence agreement beyond chance
  pretrain_offtopic.json   FewRel format, relations B (disjoint from A), as many instances as fac
  downstream/{train,valid,test}.json
                           TACRED JSON over relations A (inclusive word spans), for data_prep.tacred;
                           ``train`` holds the largest training size per relation, smaller sizes are
                           drawn from it by ``data_prep.tacred --max-examples-per-label N --seed S``
  base_text.txt            one sentence a line: every val_wiki sentence outside the downstream set
                           (the text the study's small base is pre-trained on)
  prep.json                relations, counts, drops by reason, and the disjointness checks

Disjointness. Instances are linked when they share an entity (head or tail, by lower-cased name or
by Wikidata id) or a sentence; each connected group goes wholly to the downstream side or wholly
to the pre-training side, so no downstream sentence, head or tail occurs in any pre-training set
(or in the base text). Groups larger than ``--max-group`` (hubs such as a language or a sport
shared by hundreds of sentences) always go to the pre-training side. Groups are visited in a
seeded order; one goes downstream when it holds relation-A instances that still fit every
relation's downstream quota. B instances inside downstream groups are dropped (counted).

Relations A are the ``--relations`` relations with the most instances in groups of at most
``--max-group`` (those whose entities can be kept apart), ties by P-id; the rest are B. The rule
is fixed before any result, so the choice cannot follow the outcome.

    python -m data_prep.knowledge_transfer path/to/val_wiki.json     # FewRel 1.0's validation file (required)

Source: FewRel 1.0 (MIT, Copyright (c) 2018 THUNLP); the output is a subset, not an edit.
"""
import argparse
import hashlib
import json
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

from kadapter_fairseq.errors import DataError, KAdapterError

from .common import SkipCounter, load_json, run_main, write_lines, write_prep_json
from .fewrel import _mention_span

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "examples", "data", "fewrel", "knowledge_transfer")
PRETRAIN_FILES = {"fac": "pretrain_fac.json", "shuffled": "pretrain_shuffled.json", "offtopic": "pretrain_offtopic.json"}
DOWNSTREAM_SPLITS = ("train", "valid", "test")


@dataclass
class Instance:
    relation: str
    index: int  # position in the relation's list in the source file
    raw: dict  # the source instance, written back unchanged
    words: List[str]
    subj: Tuple[int, int]  # word span [start, end)
    obj: Tuple[int, int]
    head: Tuple[str, str]  # (normalised name, Wikidata id)
    tail: Tuple[str, str]

    @property
    def id(self) -> str:
        return f"{self.relation}[{self.index}]"

    @property
    def sentence(self) -> str:
        return sentence_key(self.words)


def sentence_key(words: Sequence[str]) -> str:
    return " ".join(w for w in words if w.strip())


def entity_key(name) -> str:
    return " ".join(str(name).lower().split())


def read_instances(data, path: str, counter: SkipCounter) -> List[Instance]:
    """Every usable instance of a FewRel file; unusable ones are counted by reason."""
    if not isinstance(data, dict):
        raise DataError(path, 1, "not a FewRel file: expected an object mapping relations to instance lists")
    out = []
    for relation in sorted(data):
        instances = data[relation]
        if not isinstance(instances, list):
            raise DataError(path, relation, "instances must be a list")
        for i, inst in enumerate(instances):
            record = f"{relation}[{i}]"
            if not isinstance(inst, dict) or not isinstance(inst.get("tokens"), list) or "h" not in inst or "t" not in inst:
                raise DataError(path, record, "instance needs 'tokens', 'h' and 't'")
            words = [str(w) for w in inst["tokens"]]
            subj = _mention_span(inst["h"], path, record, "'h'")
            obj = _mention_span(inst["t"], path, record, "'t'")
            where = f"{path}:{record}"
            if not words:
                counter.skip("empty_sentence", where)
            elif subj is None or obj is None:
                counter.skip("discontiguous_mention", where)
            elif max(subj[1], obj[1]) > len(words):
                counter.skip("mention_outside_sentence", where)
            elif subj[0] < obj[1] and obj[0] < subj[1]:
                counter.skip("overlapping_mentions", where)
            else:
                counter.keep()
                out.append(Instance(relation, i, inst, words, subj, obj,
                                    (entity_key(inst["h"][0]), str(inst["h"][1])),
                                    (entity_key(inst["t"][0]), str(inst["t"][1]))))
    return out


def linked_groups(instances: Sequence[Instance]) -> List[List[int]]:
    """Indices of ``instances`` grouped by shared entity (name or id) or sentence, transitively."""
    parent: Dict[tuple, tuple] = {}

    def find(a):
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for k, inst in enumerate(instances):
        root = find(("instance", k))
        for name, qid in (inst.head, inst.tail):
            for node in (("name", name), ("id", qid)):
                other = find(node)
                if other != root:
                    parent[other] = root
        other = find(("sentence", entity_key(inst.sentence)))  # case-blind, as the checks compare
        if other != root:
            parent[other] = root
    groups = defaultdict(list)
    for k in range(len(instances)):
        groups[find(("instance", k))].append(k)
    return sorted(groups.values(), key=lambda ks: ks[0])


def seeded_order(keys: Sequence[str], seed: int) -> List[int]:
    """Positions of ``keys`` in an order fixed by ``seed`` and independent of the input order."""
    return sorted(range(len(keys)), key=lambda i: hashlib.sha1(f"{seed}\t{keys[i]}".encode("utf-8")).hexdigest())


def choose_relations(instances, groups, n: int, max_group: int) -> Tuple[List[str], List[str]]:
    """(A, B): A = the ``n`` relations with most instances in groups of at most ``max_group``."""
    relations = sorted({inst.relation for inst in instances})
    if not 0 < n < len(relations):
        raise KAdapterError(f"--relations must be between 1 and {len(relations) - 1} (the file has {len(relations)})")
    small = Counter()
    for ks in groups:
        if len(ks) <= max_group:
            small.update(instances[k].relation for k in ks)
    ranked = sorted(relations, key=lambda r: (-small[r], r))
    return sorted(ranked[:n]), sorted(ranked[n:])


def assign_groups(instances, groups, relations_a, quota: int, max_group: int, seed: int, counter: SkipCounter):
    """(downstream indices, pre-training indices); B instances in downstream groups are dropped."""
    remaining = {r: quota for r in relations_a}
    down, pre = [], []
    order = seeded_order([instances[ks[0]].id for ks in groups], seed)
    for g in order:
        ks = groups[g]
        in_a = Counter(instances[k].relation for k in ks if instances[k].relation in remaining)
        if in_a and len(ks) <= max_group and all(n <= remaining[r] for r, n in in_a.items()):
            for r, n in in_a.items():
                remaining[r] -= n
            for k in ks:
                if instances[k].relation in remaining:
                    down.append(k)
                else:
                    counter.skip("relation_b_in_downstream_group", instances[k].id)
        else:
            pre.extend(ks)
    return sorted(down), sorted(pre)


def split_downstream(down: Sequence[Instance], sizes: Dict[str, int], seed: int, counter: SkipCounter):
    """Test first, then valid, then train, up to each size per relation; instances sharing a
    sentence stay in one split. Sentences visited in a seeded order; what fits no split is counted."""
    by_sentence = defaultdict(list)
    for inst in down:
        by_sentence[entity_key(inst.sentence)].append(inst)
    keys = sorted(by_sentence)
    order = [keys[i] for i in seeded_order(keys, seed)]
    splits = {s: [] for s in DOWNSTREAM_SPLITS}
    left = {s: Counter() for s in DOWNSTREAM_SPLITS}
    for inst in down:
        for s in DOWNSTREAM_SPLITS:
            left[s][inst.relation] = sizes[s]
    for key in order:
        group = by_sentence[key]
        need = Counter(inst.relation for inst in group)
        for split in ("test", "valid", "train"):
            if all(n <= left[split][r] for r, n in need.items()):
                splits[split].extend(group)
                left[split].subtract(need)
                break
        else:
            for inst in group:
                counter.skip("downstream_quota_full", inst.id)
    for split in DOWNSTREAM_SPLITS:
        splits[split].sort(key=lambda x: (x.relation, x.index))
    return splits


def sample_per_relation(items: Sequence[Instance], cap: int, seed: int) -> List[Instance]:
    """At most ``cap`` instances of each relation, chosen in a seeded order."""
    by_relation = defaultdict(list)
    for inst in items:
        by_relation[inst.relation].append(inst)
    out = []
    for relation in sorted(by_relation):
        group = by_relation[relation]
        out.extend(group[i] for i in sorted(seeded_order([x.id for x in group], seed)[:cap]))
    return out


def match_total(items: Sequence[Instance], total: int, seed: int) -> List[Instance]:
    """``total`` instances spread as evenly as the relations allow (off-topic: as many as fac)."""
    by_relation = defaultdict(list)
    for inst in items:
        by_relation[inst.relation].append(inst)
    if sum(len(v) for v in by_relation.values()) < total:
        raise KAdapterError(f"relations B hold fewer than the {total} pre-training instances relations A have")
    take = {r: 0 for r in by_relation}
    left = total
    while left:
        open_ = [r for r in sorted(by_relation) if take[r] < len(by_relation[r])]
        share = max(1, left // len(open_))
        for r in open_:
            n = min(share, len(by_relation[r]) - take[r], left)
            take[r] += n
            left -= n
            if not left:
                break
    out = []
    for relation in sorted(by_relation):
        group = by_relation[relation]
        out.extend(group[i] for i in sorted(seeded_order([x.id for x in group], seed)[:take[relation]]))
    return out


def shuffled_labels(items: Sequence[Instance], seed: int) -> List[str]:
    """The relation labels of ``items``, permuted: the same label counts, assigned to other sentences."""
    labels = [inst.relation for inst in items]
    random.Random(seed).shuffle(labels)
    return labels


def fewrel_document(items: Sequence[Instance], labels: Sequence[str] = None) -> Dict[str, List[dict]]:
    doc = defaultdict(list)
    for inst, label in zip(items, labels or [inst.relation for inst in items]):
        doc[label].append(inst.raw)
    return {r: doc[r] for r in sorted(doc)}


def tacred_record(inst: Instance) -> dict:
    return {
        "id": f"fewrel:{inst.id}",
        "token": inst.words,
        "subj_start": inst.subj[0], "subj_end": inst.subj[1] - 1,
        "obj_start": inst.obj[0], "obj_end": inst.obj[1] - 1,
        "relation": inst.relation,
        "subj_name": inst.head[0], "subj_qid": inst.head[1],
        "obj_name": inst.tail[0], "obj_qid": inst.tail[1],
    }


def entities_and_sentences_of_fewrel(doc: Dict[str, List[dict]]):
    """(entity names and ids, sentences) of a FewRel document, as the disjointness checks compare them."""
    entities, sentences = set(), set()
    for instances in doc.values():
        for inst in instances:
            for mention in (inst["h"], inst["t"]):
                entities.update({("name", entity_key(mention[0])), ("id", str(mention[1]))})
            sentences.add(sentence_key([str(w) for w in inst["tokens"]]))
    return entities, sentences


def entities_and_sentences_of_tacred(records: Sequence[dict]):
    entities, sentences = set(), set()
    for rec in records:
        for side in ("subj", "obj"):
            entities.update({("name", entity_key(rec[f"{side}_name"])), ("id", str(rec[f"{side}_qid"]))})
        sentences.add(sentence_key(rec["token"]))
    return entities, sentences


def overlaps(downstream: Dict[str, List[dict]], pretrain: Dict[str, Dict[str, List[dict]]]) -> Dict[str, dict]:
    """Entities and sentences each pre-training set shares with the downstream splits (all should be 0)."""
    down_ent, down_sent = set(), set()
    for records in downstream.values():
        e, s = entities_and_sentences_of_tacred(records)
        down_ent |= e
        down_sent |= s
    out = {}
    for name, doc in pretrain.items():
        e, s = entities_and_sentences_of_fewrel(doc)
        out[name] = {"shared_entities": len(e & down_ent), "shared_sentences": len(s & down_sent)}
    return out


def label_agreement(true_doc: Dict[str, List[dict]], shuffled_doc: Dict[str, List[dict]]) -> float:
    """Share of the shuffled set's sentences whose label is their true one (chance: sum of squared label shares)."""
    true = {}
    for relation, instances in true_doc.items():
        for inst in instances:
            true[json.dumps(inst, sort_keys=True)] = relation
    same = total = 0
    for relation, instances in shuffled_doc.items():
        for inst in instances:
            key = json.dumps(inst, sort_keys=True)
            if key not in true:
                raise KAdapterError("the shuffled set holds a sentence the fac set does not")
            same += true[key] == relation
            total += 1
    return same / total if total else 0.0


def build(data, path: str, args) -> dict:
    counter = SkipCounter()
    instances = read_instances(data, path, counter)
    groups = linked_groups(instances)
    relations_a, relations_b = choose_relations(instances, groups, args.relations, args.max_group)
    sizes = {"train": args.train_per_relation, "valid": args.valid_per_relation, "test": args.test_per_relation}
    down_idx, pre_idx = assign_groups(instances, groups, relations_a, sum(sizes.values()), args.max_group, args.seed, counter)
    down = [instances[k] for k in down_idx]
    pre = [instances[k] for k in pre_idx]
    splits = split_downstream(down, sizes, args.seed, counter)

    fac = sample_per_relation([x for x in pre if x.relation in relations_a], args.pretrain_per_relation, args.seed)
    offtopic = match_total([x for x in pre if x.relation in relations_b], len(fac), args.seed)
    shuffled = shuffled_labels(fac, args.seed)
    return {
        "counter": counter, "groups": groups, "relations_a": relations_a, "relations_b": relations_b,
        "splits": splits, "fac": fac, "offtopic": offtopic, "shuffled_labels": shuffled, "pre": pre,
        "sizes": sizes,
    }


def write_json(path: str, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_parser():
    p = argparse.ArgumentParser(prog="python -m data_prep.knowledge_transfer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="FewRel 1.0's val_wiki.json (the validation file of the FewRel release; "
                                 "its pid2name.json beside it adds relation names)")
    p.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: examples/data/fewrel/knowledge_transfer)")
    p.add_argument("--pid2name", help="FewRel pid2name.json, for relation names in prep.json (default: beside the input)")
    p.add_argument("--relations", type=int, default=8, help="number of relations A (default 8; the rest are B)")
    p.add_argument("--train-per-relation", type=int, default=200, help="downstream train instances per relation (default 200)")
    p.add_argument("--valid-per-relation", type=int, default=25, help="downstream valid instances per relation (default 25)")
    p.add_argument("--test-per-relation", type=int, default=100, help="downstream test instances per relation (default 100)")
    p.add_argument("--pretrain-per-relation", type=int, default=250,
                   help="fac pre-training instances per relation at most (default 250); off-topic gets as many in all")
    p.add_argument("--max-group", type=int, default=120,
                   help="largest group of linked instances that may go downstream (default 120)")
    p.add_argument("--seed", type=int, default=13, help="seed of every choice made here (default 13)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    data = load_json(args.input)
    result = build(data, args.input, args)
    out = args.out
    os.makedirs(os.path.join(out, "downstream"), exist_ok=True)

    pretrain_docs = {
        "fac": fewrel_document(result["fac"]),
        "shuffled": fewrel_document(result["fac"], result["shuffled_labels"]),
        "offtopic": fewrel_document(result["offtopic"]),
    }
    for name, doc in pretrain_docs.items():
        write_json(os.path.join(out, PRETRAIN_FILES[name]), doc)
    downstream = {s: [tacred_record(x) for x in result["splits"][s]] for s in DOWNSTREAM_SPLITS}
    for split, records in downstream.items():
        write_json(os.path.join(out, "downstream", f"{split}.json"), records)
    # the base sees no downstream sentence: only the pre-training side's text, each sentence once
    base_lines = sorted({x.sentence for x in result["pre"]})
    write_lines(os.path.join(out, "base_text.txt"), base_lines)

    names = {}
    pid2name = args.pid2name or os.path.join(os.path.dirname(args.input), "pid2name.json")
    if os.path.isfile(pid2name):
        table = load_json(pid2name)
        names = {r: table[r][0] for r in result["relations_a"] + result["relations_b"] if r in table}
    counts = lambda items: dict(sorted(Counter(x.relation for x in items).items()))  # noqa: E731
    info = {
        "converter": "data_prep.knowledge_transfer",
        "source": {"path": os.path.relpath(os.path.abspath(args.input), REPO), "sha256": sha256_of(args.input)},
        "options": {k: v for k, v in vars(args).items() if k not in ("input", "out", "pid2name")},
        "relations_a": result["relations_a"],
        "relations_b": result["relations_b"],
        "relation_names": names,
        "groups": {"count": len(result["groups"]), "largest": max(len(g) for g in result["groups"])},
        "downstream": {s: counts(result["splits"][s]) for s in DOWNSTREAM_SPLITS},
        "pretrain": {"fac": counts(result["fac"]), "shuffled": dict(sorted(Counter(result["shuffled_labels"]).items())),
                     "offtopic": counts(result["offtopic"])},
        "base_text_lines": len(base_lines),
        "overlap_with_downstream": overlaps(downstream, pretrain_docs),
        "shuffled_label_agreement": round(label_agreement(pretrain_docs["fac"], pretrain_docs["shuffled"]), 4),
        "shuffled_label_agreement_chance": round(sum((n / len(result["fac"])) ** 2
                                                     for n in Counter(x.relation for x in result["fac"]).values()), 4),
        "counts": result["counter"].as_dict(),
    }
    write_prep_json(out, info)
    print(result["counter"].summary(f"FewRel {args.input}"))
    print(f"relations A {', '.join(result['relations_a'])}; B {', '.join(result['relations_b'])}")
    for split in DOWNSTREAM_SPLITS:
        print(f"downstream {split}: {len(downstream[split])}  {info['downstream'][split]}")
    for name, doc in pretrain_docs.items():
        print(f"pretrain {name}: {sum(len(v) for v in doc.values())}")
    print(f"shuffled label agreement {info['shuffled_label_agreement']} (chance {info['shuffled_label_agreement_chance']}); "
          f"shared with downstream: {info['overlap_with_downstream']}")
    print(f"written -> {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
