"""CosmosQA: four-way multiple choice reading comprehension (docs/reference/kadapter.md §3).

Each choice is scored on its own, ``<s> context </s> question </s> answer </s>``,
by a one-output ``sentence`` head at ``<s>``; the four scores go through a
softmax (criterion ``cosmosqa``), as fairseq's ``sentence_ranking`` does.

Binarized layout (see docs/downstream.md): ``<data>/input{k}/{split}.bin`` holds
choice ``k`` of every example (the pieces of ``context </s> question </s>
answer_k``), ``<data>/{split}.label`` the gold answer index, ``<data>/{split}.ids``
the record id.
"""
import logging
import os
from dataclasses import dataclass, field
from typing import List

import numpy as np
import torch
from fairseq.data import IdDataset, NestedDictionaryDataset, NumelDataset, NumSamplesDataset, RawLabelDataset, RightPadDataset
from fairseq.tasks import register_task
from omegaconf import II, MISSING

from ..errors import ConfigError, DataError
from ..predict import max_len_for, register_predictor, require_task
from ..scoring.qa import COSMOSQA_CHOICES as NUM_CHOICES
from ..scoring.qa import CosmosQARecord, read_cosmosqa
from ..data.feature_cache import concat_rows
from .base import FeatureCacheConfig, KAdapterTask, load_source, pad_batch, pieces_to_tokens

logger = logging.getLogger(__name__)

SEPARATOR = "</s>"


# --------------------------------------------------------------------------- encoding


def _cut(pieces, keep):
    return pieces[: max(keep, 0)]


def encode_choices(bpe, record: CosmosQARecord, max_len: int):
    """BPE-piece lines (no ``<s>``/final ``</s>``) for the four choices, and whether any was truncated.

    ``max_len`` counts the whole sequence including ``<s>``, the two separators and the
    final ``</s>``. The context is shortened first (from its end), then the question,
    then the answer, so the parts that differ between choices survive longest.
    """
    budget = max_len - 4
    if budget < 3:
        raise ConfigError(f"max_len={max_len} leaves no room for context, question and answer")
    context = bpe.encode(record.context).split()
    question = bpe.encode(record.question).split()
    lines, truncated = [], False
    for answer_text in record.answers:
        answer = bpe.encode(answer_text).split()
        c, q, a = context, question, answer
        excess = len(c) + len(q) + len(a) - budget
        if excess > 0:
            truncated = True
            c = _cut(c, len(c) - excess)
            excess = len(c) + len(q) + len(a) - budget
            q = _cut(q, max(len(q) - excess, 1))
            excess = len(c) + len(q) + len(a) - budget
            a = _cut(a, len(a) - max(excess, 0))
        lines.append(" ".join(c + [SEPARATOR] + q + [SEPARATOR] + a))
    return lines, truncated


# --------------------------------------------------------------------------- task


def read_int_lines(path, what, low=None, high=None) -> List[int]:
    """One int per line; a bad value is a ``DataError`` naming the line."""
    values = []
    with open(path, encoding="utf-8") as f:
        for n, text in enumerate(f, 1):
            try:
                value = int(text.strip())
            except ValueError:
                raise DataError(path, n, f"{what} {text.strip()!r} is not an integer") from None
            if (low is not None and value < low) or (high is not None and value >= high):
                raise DataError(path, n, f"{what} {value} outside [{low}, {high})")
            values.append(value)
    return values


@dataclass
class CosmosQAConfig(FeatureCacheConfig):
    data: str = field(default=MISSING, metadata={"help": "binarized data directory (data_prep.cosmosqa output)"})
    num_choices: int = field(default=NUM_CHOICES, metadata={"help": "answer choices per question"})
    max_positions: int = field(default=512, metadata={"help": "longest sequence the model accepts"})
    head_name: str = field(default="cosmosqa", metadata={"help": "name of the scoring head"})
    no_shuffle: bool = field(default=False)
    seed: int = II("common.seed")


@register_task("cosmosqa", dataclass=CosmosQAConfig)
class CosmosQATask(KAdapterTask):
    def load_dataset(self, split, combine=False, **kwargs):
        choices = [
            load_source(self.cfg.data, split, self.dictionary, subdir=f"input{k}", max_positions=self.cfg.max_positions)
            for k in range(self.cfg.num_choices)
        ]
        n = len(choices[0])
        for k, choice in enumerate(choices):
            if len(choice) != n:
                raise DataError(os.path.join(self.cfg.data, f"input{k}", split), None, f"{len(choice)} examples, input0 has {n}")
        items = {
            "id": IdDataset(),
            "nsentences": NumSamplesDataset(),
            "ntokens": NumelDataset(choices[0], reduce=True),
        }
        for k, choice in enumerate(choices):
            items[f"net_input{k + 1}"] = {
                "src_tokens": RightPadDataset(choice, pad_idx=self.dictionary.pad()),
                "src_lengths": NumelDataset(choice, reduce=False),
            }
            cached = self.cached_features(f"{split}.input{k}", self.cfg.data, f"input{k}", split, choice)
            if cached is not None:
                items[f"net_input{k + 1}"]["cached_features"] = cached
        label_path = os.path.join(self.cfg.data, f"{split}.label")
        if os.path.isfile(label_path):
            labels = read_int_lines(label_path, "label", 0, self.cfg.num_choices)
            if len(labels) != n:
                raise DataError(label_path, None, f"{len(labels)} labels for {n} examples")
            items["target"] = RawLabelDataset(labels)
        sizes = np.maximum.reduce([c.sizes for c in choices])
        dataset = NestedDictionaryDataset(items, sizes=[sizes])
        dataset = self.shuffled(dataset, n)
        logger.info("loaded %s: %d examples", split, n)
        self.datasets[split] = dataset
        return dataset

    def register_heads(self, model):
        model.register_kadapter_head(self.cfg.head_name, "sentence", num_classes=1)

    def score_choices(self, model, choices, cached_features=None):
        """B×C scores from C tensors of B×T tokens (one per choice), in one forward pass
        (``cached_features``: the choices' cached features, one mapping per choice)."""
        tokens = pad_batch(choices, self.dictionary.pad())
        cached = concat_rows(cached_features, tokens.size(1)) if cached_features else None
        logits, _ = model(tokens, classification_head_name=self.cfg.head_name, cached_features=cached)
        return logits.view(len(choices), -1).t()


@register_predictor("cosmosqa")
def predict_cosmosqa(hub, input_path, args):
    """``{"id", "label"}``: the index of the best-scoring answer."""
    require_task(hub, CosmosQATask, "cosmosqa")
    max_len = max_len_for(hub, args)
    records = list(read_cosmosqa(input_path))
    device = next(hub.model.parameters()).device
    for b in range(0, len(records), args.batch_size):
        batch = records[b : b + args.batch_size]
        encoded = [encode_choices(hub.bpe, rec, max_len)[0] for rec in batch]
        choices = [
            pad_batch([pieces_to_tokens(hub.dictionary, lines[k].split()) for lines in encoded], hub.dictionary.pad()).to(device)
            for k in range(hub.task.cfg.num_choices)
        ]
        with torch.no_grad():
            scores = hub.task.score_choices(hub.model, choices)
        for rec, best in zip(batch, scores.argmax(dim=-1).tolist()):
            yield {"id": rec.id, "label": int(best)}
