"""FewRel-format JSON -> relation-classification data for the factual adapter.

Input: a JSON object mapping each relation to its instances, each instance
``{"tokens": [...], "h": [name, id, [[token indices], ...]], "t": [...]}`` (the
FewRel release; ``val_wiki.json`` uses Wikidata P-ids). The first listed
mention of head and tail is used; it must be a contiguous run of token indices.
The head is the subject (``@``), the tail the object (``#``).

Relations under ``--min-count`` examples are dropped (default 50, as for
T-REx) and the rest split by a seeded hash of the sentence, so repeated
sentences share a split. Records are named ``<file>:<relation>[<index>]`` in
messages because a FewRel file is one JSON document.

Example:
    python -m data_prep.fewrel val_wiki.json --roberta-dir roberta.large --out data-bin/fewrel   # FewRel 1.0's file
"""
import argparse
from typing import List, Optional, Tuple

from kadapter_fairseq.errors import DataError

from .common import SkipCounter, add_tokenizer_args, load_json, progress, run_main, tokenizer_from_args
from .relations import RelationExample, add_relation_args, filter_relations, write_from_args
from .trex import split_examples


def _mention_span(mention, path, record, what) -> Optional[Tuple[int, int]]:
    """Word span of the first mention; ``None`` when it is not contiguous."""
    try:
        indices = mention[2][0]
        indices = [int(i) for i in indices]
    except (TypeError, IndexError, ValueError):
        raise DataError(path, record, f"{what} must be [name, id, [[token indices], ...]], got {mention!r}") from None
    if not indices:
        raise DataError(path, record, f"{what} has an empty token index list")
    if indices != list(range(indices[0], indices[0] + len(indices))):
        return None
    return indices[0], indices[-1] + 1


def fewrel_examples(data, path: str, counter: SkipCounter) -> List[RelationExample]:
    if not isinstance(data, dict):
        raise DataError(path, 1, "not a FewRel file: expected an object mapping relations to instance lists")
    examples = []
    for relation, instances in progress(data.items(), desc=f"read {path}", unit="rel"):
        if not isinstance(instances, list):
            raise DataError(path, f"{relation}", "instances must be a list")
        for i, inst in enumerate(instances):
            record = f"{relation}[{i}]"
            where = f"{path}:{record}"
            if not isinstance(inst, dict) or not isinstance(inst.get("tokens"), list) or "h" not in inst or "t" not in inst:
                raise DataError(path, record, "instance needs 'tokens', 'h' and 't'")
            words = [str(w) for w in inst["tokens"]]
            if not words:
                counter.skip("empty_sentence", where)
                continue
            subj = _mention_span(inst["h"], path, record, "'h'")
            obj = _mention_span(inst["t"], path, record, "'t'")
            if subj is None or obj is None:
                counter.skip("discontiguous_mention", where)
                continue
            if subj[1] > len(words) or obj[1] > len(words):
                counter.skip("mention_outside_sentence", where)
                continue
            examples.append(RelationExample(id=record, words=words, subject=subj, object=obj,
                                            relation=str(relation), where=where, group=" ".join(words)))
    return examples


def build_parser():
    p = argparse.ArgumentParser(prog="python -m data_prep.fewrel", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="FewRel JSON files (relation -> instances)")
    p.add_argument("--out", required=True, help="output data directory")
    add_relation_args(p)
    add_tokenizer_args(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    tokenizer = tokenizer_from_args(args)
    counter = SkipCounter()
    examples = []
    for path in args.inputs:
        examples.extend(fewrel_examples(load_json(path), path, counter))
    n_read = len(examples) + counter.total_skipped
    examples = filter_relations(examples, counter, args.min_count, [])
    splits = split_examples(examples, args.valid_fraction, args.seed)
    write_from_args(args, splits, tokenizer, counter, f"FewRel: {n_read} instances",
                    {"converter": "data_prep.fewrel", "sources": args.inputs})
    return 0


if __name__ == "__main__":
    run_main(main)
