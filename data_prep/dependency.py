"""Words + heads -> BPE pieces + pointer labels + binarized data (docs/reference/kadapter.md §2.2).

Shared by the CoNLL-U and spaCy converters. Heads are 1-based word indices
with 0 for the root. The first piece of every word is labelled with the
sequence position of its head's first piece (the root with 0, ``<s>``); every
other position holds the ignore index -100 (``kadapter_fairseq.data.encoding``).

Trees: non-projective trees are valid and kept; a sentence with no root,
several roots, a head out of range or a cycle is skipped and counted.

Length rule: the pointer head has ``max_len`` classes (64 by default), so a
sequence may hold at most ``max_len`` positions including ``<s>`` and
``</s>``. A longer sentence is skipped and counted (``--long skip``, the
default) or cut after the last whole word that fits (``--long truncate``),
in which case words whose head was cut away are not labelled.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence

from kadapter_fairseq.data.encoding import IGNORE_INDEX, EncodedWords, head_pointer_labels

from . import common
from .common import SkipCounter

LONG_POLICIES = ("skip", "truncate")


@dataclass
class DependencyExample:
    id: str
    words: List[str]
    heads: List[int]  # 1-based, 0 = root
    where: str


def tree_problem(heads: Sequence[int]) -> Optional[str]:
    """Why ``heads`` is not a rooted tree (``None`` when it is; crossing arcs are fine)."""
    n = len(heads)
    if n == 0:
        return "empty_sentence"
    if any(not (0 <= h <= n) for h in heads):
        return "head_out_of_range"
    roots = sum(1 for h in heads if h == 0)
    if roots == 0:
        return "no_root"
    if roots > 1:
        return "several_roots"
    # with exactly one root, the arcs form a tree iff every word reaches the root
    reaches_root = [False] * (n + 1)
    reaches_root[0] = True
    for i in range(1, n + 1):
        path, node = [], i
        while not reaches_root[node]:
            if node in path:
                return "cyclic_heads"
            path.append(node)
            node = heads[node - 1]
        for p in path:
            reaches_root[p] = True
    return None


def encode_dependency(encoder, example: DependencyExample, max_len: int, long: str = "skip"):
    """``(pieces, labels, truncated)`` or a skip reason string."""
    problem = tree_problem(example.heads)
    if problem:
        return problem
    encoded = encoder.encode_words(example.words)
    budget = max_len - 2
    if len(encoded.pieces) <= budget:
        return encoded.pieces, head_pointer_labels(encoded, example.heads), False
    if long == "skip":
        return f"too_long_for_max_len_{max_len}"
    kept_words = sum(1 for i in range(len(example.words)) if _word_end(encoded, i) <= budget)
    if kept_words == 0:
        return "first_word_too_long"
    cut = EncodedWords(encoded.pieces[: _word_end(encoded, kept_words - 1)], encoded.word_starts[:kept_words])
    heads = example.heads[:kept_words]
    labels = head_pointer_labels(cut, [h if h <= kept_words else 0 for h in heads])
    for i, h in enumerate(heads):
        if h > kept_words:
            labels[cut.position(i)] = IGNORE_INDEX
    return cut.pieces, labels, True


def _word_end(encoded: EncodedWords, i: int) -> int:
    return encoded.word_starts[i + 1] if i + 1 < len(encoded.word_starts) else len(encoded.pieces)


def write_dependency_dataset(
    out_dir: str,
    splits,
    encoder,
    dict_path: str,
    max_len: int,
    counter: SkipCounter,
    long: str = "skip",
    workers: int = 1,
    prep_info: Optional[dict] = None,
):
    """Encode, binarize and write ``{split}.heads`` / ``{split}.ids``; returns examples per split.

    ``splits`` is ``{split: examples}`` or a ``SplitStream``; sentences are encoded by ``workers``
    processes and written as they come, so nothing grows with the input."""
    return common.write_encoded_dataset(
        out_dir, splits, _encode_item, dict_path, counter, ("heads", "ids"),
        {"task": "dependency_head_prediction", "max_len": max_len, "long_policy": long},
        workers=workers, prep_info=prep_info, unit="sent", what="sentence", encoder=encoder, max_len=max_len, long=long,
    )


def _encode_item(item, encoder, max_len, long):
    """One ``(split, sentence)``: a skip reason, or its piece line, side lines (heads, id) and truncation flag."""
    ex = item[1]
    result = encode_dependency(encoder, ex, max_len, long)
    if isinstance(result, str):
        return result
    pieces, labels, was_truncated = result
    return " ".join(pieces), (" ".join(map(str, labels)), ex.id), was_truncated


def splits_from_args(args, read):
    """train and valid: ``read(args.inputs)`` and ``read(args.valid)``, or without ``--valid`` the
    inputs split by ``--valid-fraction``."""
    if args.valid:
        return {"train": read(args.inputs), "valid": read(args.valid)}
    return split_by_id(read(args.inputs), args.valid_fraction, args.seed)


def write_from_args(args, splits, tokenizer, counter: SkipCounter, title: str, prep_info: dict):
    """``write_dependency_dataset`` with the options of ``add_dependency_args`` (see ``common.write_from_args``)."""
    return common.write_from_args(
        write_dependency_dataset, args, splits, tokenizer, counter, title, {"valid_sources": args.valid, **prep_info}
    )


def add_dependency_args(parser):
    parser.add_argument("--max-len", type=int, default=64,
                        help="positions per sentence incl. <s> and </s> = pointer classes (default 64)")
    parser.add_argument("--long", choices=LONG_POLICIES, default="skip",
                        help="sentences longer than --max-len: skip and count (default) or cut after the last whole word")
    parser.add_argument("--valid-fraction", type=float, default=0.1,
                        help="share of sentences for valid when no --valid input is given (default 0.1)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the train/valid split")


def stream_split_by_id(read, counter: SkipCounter, valid_fraction: float, seed: int) -> "common.SplitStream":
    """``split_by_id`` in two passes over the input instead of a list of every sentence:
    ``read(counter)`` returns a fresh iterator of the sentences each time it is called. The
    first pass keeps 8 bytes per sentence (its id's hash); only the second counts skips in ``counter``."""
    from array import array

    hashes = array("Q", (common.split_hash(ex.id, seed) for ex in read(SkipCounter())))
    cutoff = common.valid_hash_cutoff(hashes, valid_fraction)

    def pairs():
        for ex, h in zip(read(counter), hashes):
            yield ("valid" if cutoff is not None and h <= cutoff else "train"), ex

    return common.SplitStream(["train", "valid"], pairs())


def split_by_id(examples: Sequence[DependencyExample], valid_fraction: float, seed: int):
    from .common import seeded_split

    valid_ids = seeded_split((ex.id for ex in examples), valid_fraction, seed)
    splits = {"train": [], "valid": []}
    for ex in examples:
        splits["valid" if ex.id in valid_ids else "train"].append(ex)
    return splits
