"""Extractive QA over retrieved paragraphs: SearchQA and Quasar-T (docs/reference/kadapter.md §3).

Every (question, paragraph) pair is one sequence ``<s> question </s> paragraph </s>``;
the ``span_qa`` head gives start/end logits per token. Training uses the pairs
whose paragraph contains an answer (its first occurrence); evaluation picks the
best span over *all* paragraphs of a question and scores it by EM/F1 against
every gold answer.

Source layout (the "gold" format the span_qa scorer reads; one JSON per line)::

    {"id": ..., "question": "...", "paragraphs": ["...", ...], "answers": ["...", ...]}

Binarized layout (pairs of one question are consecutive)::

    input0/{split}.bin/.idx    pieces of ``question </s> paragraph`` per pair
    {split}.positions          "start end" answer positions (``<s>`` = 0), -100 -100 if none
    {split}.pairs.jsonl        per pair: question index, paragraph index, offset of the
                               first paragraph piece, character span of each piece's word
    {split}.jsonl              the split's questions in the source layout (answers, text)
    {split}.ids                per pair, the question id
"""
import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from fairseq.data import FairseqDataset, NestedDictionaryDataset, RawLabelDataset, data_utils
from fairseq.tasks import register_task
from omegaconf import II, MISSING

from ..data.encoding import IGNORE_INDEX, WordEncoder, fit_window
from ..errors import ConfigError, DataError
from ..scoring.qa import answer_tokens, read_span_qa
from ..predict import max_len_for, register_predictor, require_task
from .base import FeatureCacheConfig, KAdapterTask, load_source, pad_batch, pieces_to_tokens, source_inputs

logger = logging.getLogger(__name__)

SEPARATOR = "</s>"
NO_SPAN = (IGNORE_INDEX, IGNORE_INDEX)


# --------------------------------------------------------------------------- encoding


def find_answer(words: Sequence[str], answers: Sequence[str]) -> Optional[Tuple[int, int]]:
    """Word range ``(first, last)`` (inclusive) of the earliest answer occurrence.

    Matching compares SQuAD-normalised tokens, so case, punctuation attached to
    words and articles do not prevent a match (``(Lou) Gehrig`` finds ``Lou
    Gehrig.``); words that normalise to nothing are skipped over.
    """
    tokens, owner = [], []
    for w, word in enumerate(words):
        for tok in answer_tokens(word):
            tokens.append(tok)
            owner.append(w)
    best = None
    for answer in answers:
        target = answer_tokens(answer)
        if not target:
            continue
        for i in range(len(tokens) - len(target) + 1):
            if tokens[i : i + len(target)] == target:
                if best is None or owner[i] < best[0]:
                    best = (owner[i], owner[i + len(target) - 1])
                break
    return best


@dataclass
class EncodedPair:
    pieces: List[str]  # question </s> paragraph, no <s>, no final </s>
    positions: Tuple[int, int]  # answer start/end sequence positions, or NO_SPAN
    offset: int  # sequence position of the first paragraph piece
    spans: List[Tuple[int, int]]  # character span (in the paragraph) of each kept piece's word
    truncated: bool
    has_answer: bool  # an answer occurs in the paragraph (maybe outside the kept window)


def encode_pair(bpe, question: str, paragraph: str, answers: Sequence[str], max_len: int, max_question_len: int, keep_answer: bool) -> EncodedPair:
    """Encode one (question, paragraph) pair within ``max_len`` positions.

    The question keeps at most ``max_question_len`` pieces. An over-long paragraph
    keeps a window around the answer when ``keep_answer`` (training data), else its
    beginning (what prediction sees, where no answer is known).
    """
    question_pieces = bpe.encode(question).split()[:max_question_len]
    budget = max_len - len(question_pieces) - 3  # <s>, separator, final </s>
    if budget < 1:
        raise ConfigError(f"max_len={max_len} leaves no room for a paragraph after {len(question_pieces)} question pieces")
    matches = list(re.finditer(r"\S+", paragraph))
    words = [m.group() for m in matches]
    encoded = WordEncoder(bpe).encode_words(words)
    piece_word = []
    for w, start in enumerate(encoded.word_starts):
        end = encoded.word_starts[w + 1] if w + 1 < len(words) else len(encoded.pieces)
        piece_word.extend([w] * (end - start))
    answer_words = find_answer(words, answers) if answers else None
    piece_span = None
    if answer_words is not None:
        first, last = answer_words
        end = encoded.word_starts[last + 1] if last + 1 < len(words) else len(encoded.pieces)
        piece_span = (encoded.word_starts[first], end)  # [start, end)
    n = len(encoded.pieces)
    window = (0, min(n, budget))
    if keep_answer and piece_span is not None:
        window = fit_window(n, piece_span, budget) or window
    lo, hi = window
    offset = len(question_pieces) + 2
    positions = NO_SPAN
    if piece_span is not None and lo <= piece_span[0] and piece_span[1] <= hi:
        positions = (offset + piece_span[0] - lo, offset + piece_span[1] - 1 - lo)
    spans = [(matches[w].start(), matches[w].end()) for w in piece_word[lo:hi]]
    return EncodedPair(
        pieces=question_pieces + [SEPARATOR] + encoded.pieces[lo:hi],
        positions=positions,
        offset=offset,
        spans=spans,
        truncated=hi - lo < n,
        has_answer=piece_span is not None,
    )


# --------------------------------------------------------------------------- span selection


def best_span(start_logits, end_logits, offset: int, length: int, max_answer_len: int):
    """``(score, start, end)`` maximising start+end logit with ``start <= end < start + max_answer_len``,
    both inside the paragraph (positions ``offset .. offset+length-1``)."""
    start = start_logits[offset : offset + length].float()
    end = end_logits[offset : offset + length].float()
    scores = start.unsqueeze(1) + end.unsqueeze(0)
    i = torch.arange(length, device=scores.device)
    width = i.unsqueeze(0) - i.unsqueeze(1)
    scores = scores.masked_fill((width < 0) | (width >= max_answer_len), float("-inf"))
    flat = int(scores.argmax())
    s, e = divmod(flat, length)
    return float(scores[s, e]), offset + s, offset + e


def decode_span(paragraph: str, spans, offset: int, start: int, end: int) -> str:
    """Paragraph text from the start of ``start``'s word to the end of ``end``'s word."""
    return paragraph[spans[start - offset][0] : spans[end - offset][1]]


def pick_answer(start_logits, end_logits, pairs, max_answer_len: int) -> str:
    """Best answer text of one question over all of its paragraphs.

    ``pairs`` is a list of ``(row, paragraph_text, offset, spans)``; ``row`` indexes
    the logits. Returns "" for a question without paragraphs.
    """
    best = None
    for row, paragraph, offset, spans in pairs:
        if not spans:
            continue
        score, s, e = best_span(start_logits[row], end_logits[row], offset, len(spans), max_answer_len)
        if best is None or score > best[0]:
            best = (score, decode_span(paragraph, spans, offset, s, e))
    return best[1] if best else ""


# --------------------------------------------------------------------------- datasets


class QuestionGroupDataset(FairseqDataset):
    """Items are questions: all (question, paragraph) pairs of one question.

    Batching whole questions lets the criterion pick the best span across a
    question's paragraphs. The collated batch is the pair batch plus ``group``
    (batch-local question index per pair) and the text needed to decode spans.
    """

    def __init__(self, pairs, groups, questions, pair_meta, shuffle, seed):
        super().__init__()
        self.dataset = pairs
        self.groups = groups  # list of lists of pair indices
        self.questions = questions  # SpanQARecord per group
        self.pair_meta = pair_meta
        self.shuffle = shuffle
        self.seed = seed
        pair_sizes = pairs.sizes[0] if isinstance(pairs.sizes, list) else pairs.sizes
        self._sizes = np.array([pair_sizes[g].max() for g in groups], dtype=np.int64)
        self._num_tokens = np.array([pair_sizes[g].max() * len(g) for g in groups], dtype=np.int64)
        self.epoch = 1

    def __len__(self):
        return len(self.groups)

    def __getitem__(self, index):
        return [(index, p, self.dataset[p]) for p in self.groups[index]]

    def collater(self, samples):
        flat = [item for group in samples for item in group]
        if not flat:
            return {}
        batch = self.dataset.collater([item for _, _, item in flat])
        local = {}
        batch["group"] = torch.tensor([local.setdefault(g, len(local)) for g, _, _ in flat], dtype=torch.long)
        batch["questions"] = [self.questions[g].to_json() for g in local]
        batch["pairs"] = [self.pair_meta[p] for _, p, _ in flat]
        return batch

    def num_tokens(self, index):
        return int(self._num_tokens[index])

    def num_tokens_vec(self, indices):
        return self._num_tokens[indices]

    def size(self, index):
        return int(self._sizes[index])

    @property
    def sizes(self):
        return self._sizes

    def set_epoch(self, epoch):
        self.epoch = epoch

    def ordered_indices(self):
        if not self.shuffle:
            return np.arange(len(self))
        with data_utils.numpy_seed(self.seed, self.epoch):
            return np.random.permutation(len(self))

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return False


def read_pair_meta(path, num_questions):
    meta = []
    with open(path, encoding="utf-8") as f:
        for n, text in enumerate(f, 1):
            try:
                row = json.loads(text)
                q, j, offset, spans = int(row["q"]), int(row["paragraph"]), int(row["offset"]), row["spans"]
            except (ValueError, KeyError, TypeError):
                raise DataError(path, n, "expected {\"q\", \"paragraph\", \"offset\", \"spans\"}") from None
            if not 0 <= q < num_questions:
                raise DataError(path, n, f"question index {q} outside the {num_questions} questions of the split")
            meta.append({"q": q, "paragraph": j, "offset": offset, "spans": spans})
    return meta


def read_positions(path, num_pairs):
    positions = []
    with open(path, encoding="utf-8") as f:
        for n, text in enumerate(f, 1):
            try:
                start, end = (int(v) for v in text.split())
            except ValueError:
                raise DataError(path, n, f"expected two ints 'start end', got {text.strip()!r}") from None
            if (start == IGNORE_INDEX) != (end == IGNORE_INDEX) or (start != IGNORE_INDEX and not 0 < start <= end):
                raise DataError(path, n, f"invalid answer span {start} {end}")
            positions.append([start, end])
    if len(positions) != num_pairs:
        raise DataError(path, None, f"{len(positions)} lines for {num_pairs} pairs")
    return positions


@dataclass
class SpanQAConfig(FeatureCacheConfig):
    data: str = field(default=MISSING, metadata={"help": "binarized data directory (data_prep.span_qa output)"})
    max_positions: int = field(default=512, metadata={"help": "longest sequence the model accepts"})
    max_answer_len: int = field(default=30, metadata={"help": "longest predicted answer, in pieces"})
    head_name: str = field(default="span_qa", metadata={"help": "name of the span head"})
    no_shuffle: bool = field(default=False)
    seed: int = II("common.seed")


@register_task("span_qa", dataclass=SpanQAConfig)
class SpanQATask(KAdapterTask):
    def load_dataset(self, split, combine=False, **kwargs):
        data = self.cfg.data
        tokens = load_source(data, split, self.dictionary, max_positions=self.cfg.max_positions)
        questions = list(read_span_qa(os.path.join(data, f"{split}.jsonl")))
        meta = read_pair_meta(os.path.join(data, f"{split}.pairs.jsonl"), len(questions))
        if len(meta) != len(tokens):
            raise DataError(os.path.join(data, f"{split}.pairs.jsonl"), None, f"{len(meta)} pairs, input0/{split} has {len(tokens)}")
        positions = read_positions(os.path.join(data, f"{split}.positions"), len(tokens))
        defn = source_inputs(tokens, self.dictionary, self.cached_features(split, data, "input0", split, tokens))
        defn["positions"] = RawLabelDataset(positions)
        pairs = NestedDictionaryDataset(defn, sizes=[tokens.sizes])
        by_question = {}
        for p, m in enumerate(meta):
            by_question.setdefault(m["q"], []).append(p)
        order = sorted(by_question)
        dataset = QuestionGroupDataset(
            pairs,
            groups=[by_question[q] for q in order],
            questions=[questions[q] for q in order],
            pair_meta=meta,
            shuffle=not self.cfg.no_shuffle and split == "train",
            seed=self.cfg.seed,
        )
        logger.info("loaded %s: %d questions (%d without paragraphs), %d pairs", split, len(order), len(questions) - len(order), len(tokens))
        self.datasets[split] = dataset
        return dataset

    def register_heads(self, model):
        model.register_kadapter_head(self.cfg.head_name, "span_qa", num_classes=2)


@register_predictor("span_qa")
def predict_span_qa(hub, input_path, args):
    """``{"id", "answer"}``: the best span over all paragraphs of each question ("" without paragraphs)."""
    from ..data.downstream import read_prep_json

    require_task(hub, SpanQATask, "span_qa")
    max_len = max_len_for(hub, args)
    max_question_len = int(read_prep_json(hub.task.cfg.data).get("max_question_len") or max_len // 4)
    device = next(hub.model.parameters()).device
    for rec in read_span_qa(input_path):
        paragraphs = [(j, p) for j, p in enumerate(rec.paragraphs) if p.strip()]
        encoded = [(p, encode_pair(hub.bpe, rec.question, p, (), max_len, max_question_len, keep_answer=False)) for _, p in paragraphs]
        starts, ends = [], []
        for b in range(0, len(encoded), args.batch_size):
            chunk = encoded[b : b + args.batch_size]
            tokens = pad_batch([pieces_to_tokens(hub.dictionary, pair.pieces) for _, pair in chunk], hub.dictionary.pad())
            with torch.no_grad():
                logits, _ = hub.model(tokens.to(device), classification_head_name=hub.task.cfg.head_name)
            starts.extend(logits[..., 0].float().cpu())
            ends.extend(logits[..., 1].float().cpu())
        pairs = [(row, paragraph, pair.offset, pair.spans) for row, (paragraph, pair) in enumerate(encoded)]
        yield {"id": rec.id, "answer": pick_answer(starts, ends, pairs, hub.task.cfg.max_answer_len)}
