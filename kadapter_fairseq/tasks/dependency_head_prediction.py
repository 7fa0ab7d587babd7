"""``dependency_head_prediction``: the linguistic adapter's pre-training task (spec 2.2).

Every word's first sub-word points at the sequence position of its head's
first sub-word (the root at ``<s>``, position 0); all other positions carry
the ignore index. The pointer head (``dependency``) has ``max_len`` classes, so
every stored pointer must be below ``max_len`` (the converters guarantee it).

Data (``data_prep.conllu`` / ``data_prep.spacy_parse``): ``input0/`` pieces and
``{split}.heads``, one integer per position of ``<s> pieces </s>``.
"""
import logging
from dataclasses import dataclass, field

import numpy as np
from fairseq.data import NestedDictionaryDataset, SortDataset, data_utils
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import register_task
from omegaconf import II, MISSING

from ..data.datasets import RawIntListDataset
from ..data.encoding import IGNORE_INDEX
from .knowledge_common import AdapterExportingTask, load_dependency_split, load_dictionary, source_inputs

logger = logging.getLogger(__name__)


@dataclass
class DependencyHeadPredictionConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "data directory written by data_prep.conllu / data_prep.spacy_parse"})
    max_len: int = field(default=64, metadata={"help": "pointer classes = longest sequence, <s> and </s> included"})
    head_name: str = field(default="dependency", metadata={"help": "name of the pointer head"})
    save_adapters: bool = field(
        default=True, metadata={"help": "write <save_dir>/adapters/<name>.pt for each trained adapter at every checkpoint"}
    )
    no_shuffle: bool = field(default=False)
    seed: int = II("common.seed")


def dependency_dataset(src, heads, dictionary):
    defn = source_inputs(src, dictionary)
    defn["target"] = RawIntListDataset(heads, pad=IGNORE_INDEX)
    return NestedDictionaryDataset(defn, sizes=[src.sizes])


@register_task("dependency_head_prediction", dataclass=DependencyHeadPredictionConfig)
class DependencyHeadPredictionTask(AdapterExportingTask):
    def __init__(self, cfg: DependencyHeadPredictionConfig, dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        dictionary = load_dictionary(cfg.data)
        logger.info(f"dictionary: {len(dictionary)} types")
        return cls(cfg, dictionary)

    def load_dataset(self, split, combine=False, **kwargs):
        src, heads = load_dependency_split(self.cfg.data, split, self.dictionary, self.cfg.max_len)
        dataset = dependency_dataset(src, heads, self.dictionary)
        if not self.cfg.no_shuffle:
            with data_utils.numpy_seed(self.cfg.seed):
                dataset = SortDataset(dataset, sort_order=[np.random.permutation(len(src))])
        logger.info(f"loaded {len(src)} sentences from {self.cfg.data} ({split})")
        self.datasets[split] = dataset
        return dataset

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        model.register_kadapter_head(self.cfg.head_name, "dependency", self.cfg.max_len)
        return self.remember_model(model)

    def max_positions(self):
        return self.cfg.max_len

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary
