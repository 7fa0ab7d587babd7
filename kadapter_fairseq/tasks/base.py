"""What every K-Adapter task shares.

- the dictionary: ``<data>/input0/dict.txt`` (the base's vocabulary, which
  every data_prep converter binarizes against) plus ``<mask>``;
- binarized sources with ``<s>`` prepended: fairseq-preprocess writes
  ``pieces </s>`` and RoBERTa reads its features at ``<s>``;
- ``build_model``: fairseq's, then the task's heads (``register_heads``);
- the base-feature cache (``task.feature_cache``, ``data/feature_cache.py``):
  every source gets a ``net_input["cached_features"]`` dataset, the cache is
  opened once the model exists (``get_batch_iterator``) and filled by
  ``train_step``/``valid_step`` in the main process;
- adapter-only checkpoints: after every fairseq checkpoint save (``post_save``,
  which fairseq calls on the saving rank only, so under DDP the files are
  written once) each trained adapter goes to ``<save_dir>/adapters/<name>.pt``
  with ``model.save_adapters``, for the tasks whose config has
  ``save_adapters`` set.
"""
import atexit
import logging
import os
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from fairseq.data import (
    Dictionary,
    IdDataset,
    NumelDataset,
    NumSamplesDataset,
    PrependTokenDataset,
    RightPadDataset,
    SortDataset,
    data_utils,
)
from fairseq.tasks import FairseqTask

from ..data.dictionary import load_roberta_dictionary
from ..data.feature_cache import FeatureCache, FeatureCacheConfig, check_model  # noqa: F401  (configs inherit it)
from ..data.labels import LabelVocabulary
from ..errors import ConfigError, KAdapterError

logger = logging.getLogger(__name__)

ADAPTER_DIR = "adapters"


def dictionary_path(data_dir: str) -> str:
    return os.path.join(data_dir, "input0", "dict.txt")


def load_task_dictionary(data_dir: str) -> Dictionary:
    return load_roberta_dictionary(dictionary_path(data_dir), "task.data: run the data_prep converter for this task first")


def check_same_dictionary(a: str, b: str):
    """Two data directories whose examples go through one model must share its dictionary."""
    pa, pb = dictionary_path(a), dictionary_path(b)
    with open(pa, encoding="utf-8") as fa, open(pb, encoding="utf-8") as fb:
        if fa.read() != fb.read():
            raise KAdapterError(f"{pa} and {pb} differ: both data sets must be binarized with the same base's dict.txt")


def load_source(data_dir: str, split: str, dictionary: Dictionary, subdir: str = "input0",
                combine: bool = False, max_positions: Optional[int] = None):
    """``<s>`` + the binarized pieces (+ ``</s>`` from fairseq-preprocess).

    With ``max_positions``, a sequence longer than that is a ``ConfigError`` here,
    where the fix (convert again, or raise the limit) can still be named.
    """
    prefix = os.path.join(data_dir, subdir, split)
    tokens = data_utils.load_indexed_dataset(prefix, dictionary, combine=combine)
    if tokens is None:
        raise KAdapterError(f"binarized split not found: {prefix}.bin/.idx")
    src = PrependTokenDataset(tokens, dictionary.bos())
    if max_positions is not None and len(src) and int(src.sizes.max()) > max_positions:
        raise ConfigError(
            f"{prefix}: sequences of up to {int(src.sizes.max())} tokens exceed task.max_positions={max_positions}; "
            "convert again with a smaller --max-len or raise max_positions"
        )
    return src


def pieces_to_tokens(dictionary: Dictionary, pieces: List[str]) -> torch.LongTensor:
    """``<s> pieces </s>`` as ids, exactly as binarized data plus the task's ``<s>``."""
    body = dictionary.encode_line(" ".join(pieces), add_if_not_exist=False, append_eos=True).long()
    return torch.cat([torch.tensor([dictionary.bos()]), body])


def pad_batch(rows, pad):
    """Rows (or blocks of rows) of token ids, right-padded to one width and stacked."""
    width = max(r.size(-1) for r in rows)
    return torch.cat([F.pad(r.view(-1, r.size(-1)), (0, width - r.size(-1)), value=pad) for r in rows], dim=0)


def source_inputs(src, dictionary: Dictionary, cached_features=None) -> dict:
    """The items of a ``NestedDictionaryDataset`` that every task's batches carry
    (``cached_features``: the source's ``KAdapterTask.cached_features`` dataset, if any)."""
    net_input = {
        "src_tokens": RightPadDataset(src, pad_idx=dictionary.pad()),
        "src_lengths": NumelDataset(src, reduce=False),
    }
    if cached_features is not None:
        net_input["cached_features"] = cached_features
    return {
        "id": IdDataset(),
        "net_input": net_input,
        "nsentences": NumSamplesDataset(),
        "ntokens": NumelDataset(src, reduce=True),
    }


class KAdapterTask(FairseqTask):
    """A task over ``<data>/input0`` whose model is built with the task's heads.

    Subclasses say which heads in ``register_heads``; a subclass that needs more
    than the dictionary at setup (a label set) overrides ``setup_task``.
    """

    _export_model = None

    def __init__(self, cfg, dictionary: Dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.feature_cache = None
        if getattr(cfg, "feature_cache", ""):
            self.feature_cache = FeatureCache(cfg.feature_cache, cfg.feature_cache_dtype)
            atexit.register(self.feature_cache.commit)  # a clean exit keeps what it filled; a kill drops it

    # ------------------------------------------------------------------------------------------
    # base-feature cache

    def cached_features(self, name: str, data_dir: str, subdir: str, split: str, src):
        """The ``cached_features`` dataset of one binarized source (None when the cache is off)."""
        if self.feature_cache is None:
            return None
        prefix = os.path.join(data_dir, subdir, split)
        return self.feature_cache.dataset(name, prefix, src.sizes)

    def get_batch_iterator(self, dataset, *args, **kwargs):
        # the model exists (and its checkpoint is loaded) by the time fairseq asks for batches
        if self.feature_cache is not None and self._export_model is not None:
            self.feature_cache.open(self._export_model)
        return super().get_batch_iterator(dataset, *args, **kwargs)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False, **kwargs):
        if self.feature_cache is not None:
            self.feature_cache.fill(sample, model)
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad, **kwargs)

    def valid_step(self, sample, model, criterion, **kwargs):
        if self.feature_cache is not None:
            self.feature_cache.fill(sample, model)
        return super().valid_step(sample, model, criterion, **kwargs)

    def begin_epoch(self, epoch, model):
        super().begin_epoch(epoch, model)
        if self.feature_cache is not None:
            self.feature_cache.commit()

    def begin_valid_epoch(self, epoch, model):
        super().begin_valid_epoch(epoch, model)
        if self.feature_cache is not None:
            self.feature_cache.commit()

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        dictionary = load_task_dictionary(cfg.data)
        logger.info(f"[input] dictionary: {len(dictionary)} types")
        return cls(cfg, dictionary)

    def register_heads(self, model):
        raise NotImplementedError

    def shuffled(self, dataset, size: int):
        """``dataset`` in one seeded random order (unless ``cfg.no_shuffle``), as fairseq's sentence_prediction."""
        if self.cfg.no_shuffle:
            return dataset
        with data_utils.numpy_seed(self.cfg.seed):
            return SortDataset(dataset, sort_order=[np.random.permutation(size)])

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        self.register_heads(model)
        if self.feature_cache is not None:
            check_model(model)
        self._export_model = model  # post_save has no model argument
        return model

    def post_save(self, cp_path: Optional[str], num_updates: int):
        """Write ``<save_dir>/adapters/<name>.pt`` for every trained adapter (when ``cfg.save_adapters``)."""
        model = self._export_model
        if cp_path is None or model is None or not getattr(self.cfg, "save_adapters", False):
            return
        names = list(getattr(model, "adapters", {}) or {})
        if not names or not getattr(model, "adapters_train", False):
            return
        out_dir = os.path.join(os.path.dirname(cp_path), ADAPTER_DIR)
        for name in names:
            path = os.path.join(out_dir, f"{name}.pt")
            model.save_adapters(path, names=[name])
            logger.info(f"saved adapter {name!r} ({num_updates} updates) to {path}")

    def max_positions(self):
        return self.cfg.max_positions

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary


class LabelledTask(KAdapterTask):
    """A task whose targets are names from ``<data>/labels.txt``."""

    def __init__(self, cfg, dictionary: Dictionary, labels: LabelVocabulary):
        super().__init__(cfg, dictionary)
        self.labels = labels

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        dictionary = load_task_dictionary(cfg.data)
        labels = LabelVocabulary.load(os.path.join(cfg.data, "labels.txt"))
        logger.info(f"[input] dictionary: {len(dictionary)} types; labels: {len(labels)}")
        return cls(cfg, dictionary, labels)
