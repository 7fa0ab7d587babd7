"""``relation_pretrain``: the factual adapter's pre-training task (docs/reference/kadapter.md §2.1).

Relation classification over T-REx-style sentences with the subject wrapped in
``@ ... @`` and the object in ``# ... #``; a ``span_pair`` head reads the fused
feature at the first ``@`` and the first ``#``.

Data (``data_prep.trex`` / ``data_prep.fewrel``): ``input0/`` pieces,
``labels.txt``, ``{split}.label`` (relation ids) and ``{split}.positions``
(two positions, ``<s>`` = 0).

Multitask baseline ("RoBERTa + multitask"): set ``dependency_data`` to a
dependency-head data directory (same base dictionary). Both datasets are then
concatenated into one training set whose batches mix the two kinds of example;
the ``relation_pretrain`` criterion sends relation rows to the relation head and
dependency rows to the pointer head and adds the two mean losses. With
``model.adapter_names=""`` and ``model.train_phase=full`` this trains both
objectives jointly on an unfrozen RoBERTa. Rows of the other kind carry the
ignore index (-100) as their target, which is how the criterion tells them apart.
"""
import logging
import os
from dataclasses import dataclass, field

from fairseq.data import ConcatDataset, NestedDictionaryDataset, RawLabelDataset
from fairseq.tasks import register_task
from omegaconf import II, MISSING

from ..data.datasets import RawIntListDataset, check_count, load_int_lists
from ..data.text_files import load_raw_lines
from ..data.encoding import IGNORE_INDEX
from ..data.labels import LabelVocabulary
from ..errors import DataError
from .base import FeatureCacheConfig, LabelledTask, check_same_dictionary, load_source, source_inputs
from .dependency_head_prediction import load_dependency_split

logger = logging.getLogger(__name__)

NUM_POSITIONS = 2  # first "@", first "#"


@dataclass
class RelationPretrainConfig(FeatureCacheConfig):
    data: str = field(default=MISSING, metadata={"help": "data directory written by data_prep.trex / data_prep.fewrel"})
    head_name: str = field(default="relation", metadata={"help": "name of the relation head"})
    max_positions: int = field(default=512, metadata={"help": "longest sequence accepted, <s> and </s> included"})
    dependency_data: str = field(
        default="", metadata={"help": "multitask baseline: also train dependency-head prediction on this data directory"}
    )
    dependency_head_name: str = field(default="dependency", metadata={"help": "multitask: name of the pointer head"})
    dependency_max_len: int = field(default=64, metadata={"help": "multitask: pointer classes of the dependency head"})
    save_adapters: bool = field(
        default=True, metadata={"help": "write <save_dir>/adapters/<name>.pt for each trained adapter at every checkpoint"}
    )
    no_shuffle: bool = field(default=False)
    seed: int = II("common.seed")


def load_relation_split(data_dir, split, dictionary, labels: LabelVocabulary):
    """``(src, positions, targets)``; bad lines are ``DataError``s naming file and line."""
    src = load_source(data_dir, split, dictionary)
    pos_path = os.path.join(data_dir, f"{split}.positions")
    positions = load_int_lists(pos_path)
    check_count(pos_path, positions, len(src))
    for n, (row, size) in enumerate(zip(positions, src.sizes), 1):
        if len(row) != NUM_POSITIONS:
            raise DataError(pos_path, n, f"expected {NUM_POSITIONS} positions (first '@', first '#'), got {len(row)}")
        if not all(1 <= p < size - 1 for p in row):
            raise DataError(pos_path, n, f"positions {row} fall outside the {size}-position sequence (<s> = 0)")
    label_path = os.path.join(data_dir, f"{split}.label")
    lines = load_raw_lines(label_path)
    check_count(label_path, lines, len(src))
    targets = [labels.encode(line.strip(), label_path, n) for n, line in enumerate(lines, 1)]
    return src, positions, targets


@register_task("relation_pretrain", dataclass=RelationPretrainConfig)
class RelationPretrainTask(LabelledTask):
    @classmethod
    def setup_task(cls, cfg, **kwargs):
        task = super().setup_task(cfg, **kwargs)
        if cfg.dependency_data:
            check_same_dictionary(cfg.data, cfg.dependency_data)
            logger.info(f"multitask with {cfg.dependency_data}")
        return task

    @property
    def multitask(self) -> bool:
        return bool(self.cfg.dependency_data)

    def load_dataset(self, split, combine=False, **kwargs):
        src, positions, targets = load_relation_split(self.cfg.data, split, self.dictionary, self.labels)
        defn = source_inputs(src, self.dictionary, self.cached_features(split, self.cfg.data, "input0", split, src))
        defn["positions"] = RawIntListDataset(positions, pad=0)
        defn["target"] = RawLabelDataset(targets)
        if self.multitask:
            # relation rows: no pointer labels (a single ignored position, padded with ignores)
            defn["dep_target"] = RawIntListDataset([[IGNORE_INDEX]] * len(src), pad=IGNORE_INDEX)
        dataset = NestedDictionaryDataset(defn, sizes=[src.sizes])
        n_rel, sizes = len(src), src.sizes
        if self.multitask:
            dep_src, heads = load_dependency_split(self.cfg.dependency_data, split, self.dictionary, self.cfg.dependency_max_len)
            dep_cache = self.cached_features(f"dependency-{split}", self.cfg.dependency_data, "input0", split, dep_src)
            dep = source_inputs(dep_src, self.dictionary, dep_cache)
            dep["positions"] = RawIntListDataset([[0] * NUM_POSITIONS] * len(dep_src), pad=0)
            dep["target"] = RawLabelDataset([IGNORE_INDEX] * len(dep_src))
            dep["dep_target"] = RawIntListDataset(heads, pad=IGNORE_INDEX)
            dataset = ConcatDataset([dataset, NestedDictionaryDataset(dep, sizes=[dep_src.sizes])])
            sizes = dataset.sizes
            logger.info(f"multitask {split}: {n_rel} relation + {len(dep_src)} dependency examples")
        dataset = self.shuffled(dataset, len(sizes))
        logger.info(f"loaded {n_rel} relation examples from {self.cfg.data} ({split})")
        self.datasets[split] = dataset
        return dataset

    def register_heads(self, model):
        model.register_kadapter_head(self.cfg.head_name, "span_pair", len(self.labels))
        if self.multitask:
            model.register_kadapter_head(self.cfg.dependency_head_name, "dependency", self.cfg.dependency_max_len)
