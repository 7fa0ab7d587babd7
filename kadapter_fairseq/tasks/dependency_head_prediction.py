"""``dependency_head_prediction``: the linguistic adapter's pre-training task (docs/reference/kadapter.md §2.2).

Every word's first sub-word points at the sequence position of its head's
first sub-word (the root at ``<s>``, position 0); all other positions carry
the ignore index. The pointer head (``dependency``) has ``max_len`` classes, so
every stored pointer must be below ``max_len`` (the converters guarantee it).

Data (``data_prep.conllu`` / ``data_prep.spacy_parse``): ``input0/`` pieces and
``{split}.heads``, one integer per position of ``<s> pieces </s>``. The
multitask baseline of ``relation_pretrain`` reads the same layout through
``load_dependency_split``.
"""
import logging
import os
from dataclasses import dataclass, field
from typing import List

import numpy as np
from fairseq.data import Dictionary, NestedDictionaryDataset
from fairseq.tasks import register_task
from omegaconf import II, MISSING

from ..data.datasets import RawIntListDataset, check_count, load_int_lists
from ..data.encoding import IGNORE_INDEX
from ..errors import DataError
from .base import FeatureCacheConfig, KAdapterTask, load_source, source_inputs

logger = logging.getLogger(__name__)


@dataclass
class DependencyHeadPredictionConfig(FeatureCacheConfig):
    data: str = field(default=MISSING, metadata={"help": "data directory written by data_prep.conllu / data_prep.spacy_parse"})
    max_len: int = field(default=64, metadata={"help": "pointer classes = longest sequence, <s> and </s> included"})
    head_name: str = field(default="dependency", metadata={"help": "name of the pointer head"})
    save_adapters: bool = field(
        default=True, metadata={"help": "write <save_dir>/adapters/<name>.pt for each trained adapter at every checkpoint"}
    )
    no_shuffle: bool = field(default=False)
    seed: int = II("common.seed")


def load_head_targets(data_dir: str, split: str, sizes: np.ndarray, num_classes: int) -> List[List[int]]:
    """``{split}.heads``: one pointer per sequence position, checked against the sequence and the head."""
    path = os.path.join(data_dir, f"{split}.heads")
    rows = load_int_lists(path)
    check_count(path, rows, len(sizes))
    for n, (row, size) in enumerate(zip(rows, sizes), 1):
        if len(row) != size:
            raise DataError(path, n, f"has {len(row)} pointers but the sequence has {size} positions (<s> ... </s>)")
        limit = min(int(size), num_classes)
        bad = [v for v in row if v != IGNORE_INDEX and not 0 <= v < limit]
        if bad:
            raise DataError(path, n, f"pointer {bad[0]} is outside the sequence or the head's {num_classes} classes "
                                     f"(valid: 0..{limit - 1} or {IGNORE_INDEX})")
    return rows


def load_dependency_split(data_dir: str, split: str, dictionary: Dictionary, num_classes: int):
    """``(src, heads)`` of a dependency-head split."""
    src = load_source(data_dir, split, dictionary)
    return src, load_head_targets(data_dir, split, src.sizes, num_classes)


def dependency_dataset(src, heads, dictionary, cached_features=None):
    defn = source_inputs(src, dictionary, cached_features)
    defn["target"] = RawIntListDataset(heads, pad=IGNORE_INDEX)
    return NestedDictionaryDataset(defn, sizes=[src.sizes])


@register_task("dependency_head_prediction", dataclass=DependencyHeadPredictionConfig)
class DependencyHeadPredictionTask(KAdapterTask):
    def load_dataset(self, split, combine=False, **kwargs):
        src, heads = load_dependency_split(self.cfg.data, split, self.dictionary, self.cfg.max_len)
        dataset = dependency_dataset(src, heads, self.dictionary, self.cached_features(split, self.cfg.data, "input0", split, src))
        dataset = self.shuffled(dataset, len(src))
        logger.info(f"loaded {len(src)} sentences from {self.cfg.data} ({split})")
        self.datasets[split] = dataset
        return dataset

    def register_heads(self, model):
        model.register_kadapter_head(self.cfg.head_name, "dependency", self.cfg.max_len)

    def max_positions(self):
        return self.cfg.max_len
