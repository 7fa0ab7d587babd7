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

from fairseq.data import NestedDictionaryDataset, RawLabelDataset
from omegaconf import II, MISSING

from ..data.datasets import check_count
from ..data.text_files import load_raw_lines
from ..errors import DataError
from .base import FeatureCacheConfig, LabelledTask, load_source, source_inputs

logger = logging.getLogger(__name__)


@dataclass
class MarkedClassificationConfig(FeatureCacheConfig):
    data: str = field(default=MISSING, metadata={"help": "binarized data directory (data_prep output)"})
    max_positions: int = field(default=512, metadata={"help": "longest sequence accepted, <s> and </s> included"})
    classification_head_name: str = field(default="", metadata={"help": "head name (default: the task's name)"})
    no_shuffle: bool = field(default=False)
    seed: int = II("common.seed")


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


class MarkedClassificationTask(LabelledTask):
    HEAD_TYPE = ""
    NUM_POSITIONS = 0

    @property
    def head_name(self) -> str:
        return self.cfg.classification_head_name or self.NAME

    def build_targets(self, label_lines, path):
        raise NotImplementedError

    def head_logits(self, model, net_input):
        """The head's logits for a batch: one row per example, read at its marker positions."""
        logits, _ = model(
            net_input["src_tokens"],
            positions=net_input["positions"],
            classification_head_name=self.head_name,
            cached_features=net_input.get("cached_features"),
        )
        return logits

    def load_dataset(self, split, combine=False, **kwargs):
        src_tokens = load_source(self.cfg.data, split, self.dictionary, combine=combine)
        n = len(src_tokens)
        pos_path = os.path.join(self.cfg.data, f"{split}.positions")
        positions = parse_positions(read_side_lines(pos_path, n), pos_path, src_tokens.sizes, self.NUM_POSITIONS)
        label_path = os.path.join(self.cfg.data, f"{split}.label")
        targets = self.build_targets(read_side_lines(label_path, n), label_path)
        defn = source_inputs(src_tokens, self.dictionary, self.cached_features(split, self.cfg.data, "input0", split, src_tokens))
        defn["net_input"]["positions"] = RawLabelDataset(positions)  # fixed count per example: stacks to B x k
        defn["target"] = RawLabelDataset(targets)
        dataset = NestedDictionaryDataset(defn, sizes=[src_tokens.sizes])
        dataset = self.shuffled(dataset, n)
        logger.info(f"loaded {split}: {n} examples")
        self.datasets[split] = dataset
        return dataset

    def register_heads(self, model):
        model.register_kadapter_head(self.head_name, self.HEAD_TYPE, len(self.labels))
