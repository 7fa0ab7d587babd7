"""Word-level sub-word encoding, span marking and pointer labels.

Every task marks spans the same way (``@ mention @``, ``# object #``) and needs to
know where a marker or a word's first sub-word lands after BPE. Encoding word by
word (later words with a leading space) keeps that bookkeeping exact for both
GPT-2 BPE and sentencepiece: neither merges across a space, so the pieces equal
those of encoding the joined sentence.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

IGNORE_INDEX = -100
BOS_OFFSET = 1  # every encoded sequence starts with <s>


@dataclass
class EncodedWords:
    pieces: List[str]  # BPE pieces, as the dictionary spells them
    word_starts: List[int]  # index in ``pieces`` of each word's first piece

    def position(self, word_index: int) -> int:
        """Sequence position (``<s>`` included) of a word's first piece."""
        return self.word_starts[word_index] + BOS_OFFSET


class WordEncoder:
    """Wraps a fairseq BPE object (``encode(str) -> 'p1 p2 ...'``)."""

    def __init__(self, bpe):
        self.bpe = bpe

    def encode_words(self, words: Sequence[str]) -> EncodedWords:
        pieces, starts = [], []
        for i, word in enumerate(words):
            encoded = self.bpe.encode(word if i == 0 else " " + word).split()
            if not encoded:  # whitespace-only word: keep the index valid
                encoded = self.bpe.encode(" " if i else "").split() or []
            starts.append(len(pieces))
            pieces.extend(encoded)
        return EncodedWords(pieces, starts)


def mark_spans(words: Sequence[str], spans: Sequence[Tuple[int, int, str]]):
    """Wrap each span ``(start, end_exclusive, marker)`` of ``words`` in its marker.

    Returns ``(marked_words, opening_indices)``: the new word list and, per span in
    the order given, the index of its opening marker. Spans must be non-empty and
    must not overlap (callers turn the ``ValueError`` into a counted skip or a
    ``DataError`` naming the record).
    """
    n = len(words)
    for s, e, _ in spans:
        if not (0 <= s < e <= n):
            raise ValueError(f"span [{s}, {e}) outside the {n} words")
    order = sorted(range(len(spans)), key=lambda k: spans[k][0])
    for a, b in zip(order, order[1:]):
        if spans[b][0] < spans[a][1]:
            raise ValueError(f"spans {spans[a][:2]} and {spans[b][:2]} overlap")
    out, opening = [], [0] * len(spans)
    cursor = 0
    for k in order:
        s, e, marker = spans[k]
        out.extend(words[cursor:s])
        opening[k] = len(out)
        out.append(marker)
        out.extend(words[s:e])
        out.append(marker)
        cursor = e
    out.extend(words[cursor:])
    return out, opening


def fit_window(length: int, keep: Tuple[int, int], max_len: int) -> Optional[Tuple[int, int]]:
    """Choose ``[start, end)`` of at most ``max_len`` items containing ``keep = [lo, hi)``.

    Centres the window on the kept range where possible; ``None`` when the kept
    range alone is longer than ``max_len``.
    """
    if length <= max_len:
        return 0, length
    lo, hi = keep
    if hi - lo > max_len:
        return None
    slack = max_len - (hi - lo)
    start = max(0, min(lo - slack // 2, length - max_len))
    return start, start + max_len


def head_pointer_labels(encoded: EncodedWords, heads: Sequence[int]) -> List[int]:
    """Pointer targets over the sequence ``<s> pieces </s>``.

    ``heads`` are 1-based word indices with 0 for the root (CoNLL-U convention).
    The first piece of each word points at the first piece of its head; the root
    points at ``<s>`` (position 0); every other position is ``IGNORE_INDEX``.
    """
    labels = [IGNORE_INDEX] * (len(encoded.pieces) + 2)
    for i, head in enumerate(heads):
        labels[encoded.position(i)] = 0 if head == 0 else encoded.position(head - 1)
    return labels
