"""Shared base of the tasks that classify marked spans (entity typing, TACRED).

Both read the same binarized layout (docs/downstream.md): ``input0/`` pieces,
``{split}.positions`` (opening-marker positions, ``<s>`` = 0), ``{split}.label``
and ``labels.txt``. They differ in how many positions an example has, which
head reads them, and how a label line becomes a target; subclasses say that.
"""
import logging
import os
from dataclasses import dataclass, field
from typing import List

import numpy as np
from fairseq.data import (
    Dictionary,
    IdDataset,
    NestedDictionaryDataset,
    NumelDataset,
    NumSamplesDataset,
    PrependTokenDataset,
    RawLabelDataset,
    RightPadDataset,
    SortDataset,
    data_utils,
)
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask
from omegaconf import II, MISSING

from ..data.datasets import check_count, load_raw_lines
from ..data.labels import LabelVocabulary
from ..errors import DataError, KAdapterError

logger = logging.getLogger(__name__)


@dataclass
class MarkedClassificationConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "binarized data directory (data_prep output)"})
    max_positions: int = field(default=512, metadata={"help": "longest sequence accepted, <s> and </s> included"})
    classification_head_name: str = field(default="", metadata={"help": "head name (default: the task's name)"})
    no_shuffle: bool = field(default=False)
    seed: int = II("common.seed")


def load_task_dictionary(data_dir) -> Dictionary:
    """``input0/dict.txt`` plus ``<mask>``: the base model's vocabulary, as sentence_prediction builds it."""
    path = os.path.join(data_dir, "input0", "dict.txt")
    if not os.path.isfile(path):
        raise KAdapterError(f"dictionary not found: {path} (run the task's data_prep converter first)")
    dictionary = Dictionary.load(path)
    dictionary.add_symbol("<mask>")
    return dictionary


def read_side_lines(path, expected: int) -> List[str]:
    """The lines of a raw side file, which must have one line per binarized example."""
    lines = load_raw_lines(path)
    check_count(path, lines, expected)
    return lines


def parse_positions(lines, path, sizes, count: int) -> List[List[int]]:
    """``count`` positions per line, each inside its sequence (``sizes`` count <s> and </s>)."""
    rows = []
    for i, line in enumerate(lines):
        try:
            row = [int(v) for v in line.split()]
        except ValueError:
            raise DataError(path, i + 1, f"positions must be integers, got {line!r}") from None
        if len(row) != count:
            raise DataError(path, i + 1, f"expected {count} position(s), got {len(row)}")
        for p in row:
            if not 0 <= p < sizes[i]:
                raise DataError(path, i + 1, f"position {p} is outside the sequence of length {sizes[i]}")
        rows.append(row)
    return rows


class MarkedClassificationTask(FairseqTask):
    HEAD_TYPE = ""
    NUM_POSITIONS = 0

    def __init__(self, cfg, dictionary: Dictionary, labels: LabelVocabulary):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.labels = labels

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        dictionary = load_task_dictionary(cfg.data)
        labels = LabelVocabulary.load(os.path.join(cfg.data, "labels.txt"))
        logger.info(f"dictionary: {len(dictionary)} types; labels: {len(labels)}")
        return cls(cfg, dictionary, labels)

    @property
    def head_name(self) -> str:
        return self.cfg.classification_head_name or self.NAME

    def build_targets(self, label_lines, path):
        raise NotImplementedError

    def load_dataset(self, split, combine=False, **kwargs):
        prefix = os.path.join(self.cfg.data, "input0", split)
        tokens = data_utils.load_indexed_dataset(prefix, self.dictionary, combine=combine)
        if tokens is None:
            raise KAdapterError(f"binarized split not found: {prefix}.bin/.idx")
        src_tokens = PrependTokenDataset(tokens, self.dictionary.bos())
        n = len(src_tokens)
        pos_path = os.path.join(self.cfg.data, f"{split}.positions")
        positions = parse_positions(read_side_lines(pos_path, n), pos_path, src_tokens.sizes, self.NUM_POSITIONS)
        label_path = os.path.join(self.cfg.data, f"{split}.label")
        targets = self.build_targets(read_side_lines(label_path, n), label_path)
        dataset = NestedDictionaryDataset(
            {
                "id": IdDataset(),
                "net_input": {
                    "src_tokens": RightPadDataset(src_tokens, pad_idx=self.dictionary.pad()),
                    "src_lengths": NumelDataset(src_tokens, reduce=False),
                    "positions": RawLabelDataset(positions),  # fixed count per example: stacks to B x k
                },
                "target": RawLabelDataset(targets),
                "nsentences": NumSamplesDataset(),
                "ntokens": NumelDataset(src_tokens, reduce=True),
            },
            sizes=[src_tokens.sizes],
        )
        if not self.cfg.no_shuffle:
            with data_utils.numpy_seed(self.cfg.seed):
                dataset = SortDataset(dataset, sort_order=[np.random.permutation(n)])
        logger.info(f"loaded {split}: {n} examples")
        self.datasets[split] = dataset
        return dataset

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        model.register_kadapter_head(self.head_name, self.HEAD_TYPE, len(self.labels))
        return model

    def max_positions(self):
        return self.cfg.max_positions

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary
