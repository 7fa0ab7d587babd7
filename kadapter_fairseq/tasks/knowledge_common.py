"""What the two knowledge pre-training tasks share.

- reading ``<data>/input0`` (the base's dictionary plus ``<mask>``, sequences
  with ``<s>`` prepended) and checking side files line by line;
- the ``dependency`` split as a dataset, which the multitask baseline of
  ``relation_pretrain`` reuses;
- writing adapter-only checkpoints: after every fairseq checkpoint save
  (``post_save``, which fairseq calls on the saving rank only, so under DDP the
  files are written once) each trained adapter goes to
  ``<save_dir>/adapters/<name>.pt`` with ``model.save_adapters``.
"""
import logging
import os
from typing import List, Optional

import numpy as np
from fairseq.data import Dictionary, IdDataset, NumelDataset, NumSamplesDataset, PrependTokenDataset, RightPadDataset, data_utils
from fairseq.tasks import FairseqTask

from ..data.datasets import check_count, load_int_lists
from ..data.encoding import IGNORE_INDEX
from ..errors import DataError, KAdapterError

logger = logging.getLogger(__name__)

ADAPTER_DIR = "adapters"


def load_dictionary(data_dir: str) -> Dictionary:
    path = os.path.join(data_dir, "input0", "dict.txt")
    if not os.path.isfile(path):
        raise KAdapterError(f"dictionary not found: {path} (run the data_prep converter for this task first)")
    dictionary = Dictionary.load(path)
    dictionary.add_symbol("<mask>")  # as fairseq's sentence_prediction: the base was trained with it
    return dictionary


def load_source(data_dir: str, split: str, dictionary: Dictionary):
    """``<s>`` + the binarized pieces (+ ``</s>`` from fairseq-preprocess)."""
    prefix = os.path.join(data_dir, "input0", split)
    tokens = data_utils.load_indexed_dataset(prefix, dictionary)
    if tokens is None:
        raise KAdapterError(f"binarized split not found: {prefix}.bin/.idx")
    return PrependTokenDataset(tokens, dictionary.bos())


def source_inputs(src, dictionary: Dictionary) -> dict:
    return {
        "id": IdDataset(),
        "net_input": {
            "src_tokens": RightPadDataset(src, pad_idx=dictionary.pad()),
            "src_lengths": NumelDataset(src, reduce=False),
        },
        "nsentences": NumSamplesDataset(),
        "ntokens": NumelDataset(src, reduce=True),
    }


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


def check_same_dictionary(a: str, b: str):
    pa, pb = (os.path.join(d, "input0", "dict.txt") for d in (a, b))
    with open(pa, encoding="utf-8") as fa, open(pb, encoding="utf-8") as fb:
        if fa.read() != fb.read():
            raise KAdapterError(f"{pa} and {pb} differ: both data sets must be binarized with the same base's dict.txt")


class AdapterExportingTask(FairseqTask):
    """Writes ``<save_dir>/adapters/<name>.pt`` for every trained adapter after each checkpoint save."""

    _export_model = None

    def remember_model(self, model):
        self._export_model = model
        return model

    def post_save(self, cp_path: Optional[str], num_updates: int):
        model = self._export_model
        if cp_path is None or model is None or not getattr(self.cfg, "save_adapters", True):
            return
        names = list(getattr(model, "adapters", {}) or {})
        if not names or not getattr(model, "adapters_train", False):
            return
        out_dir = os.path.join(os.path.dirname(cp_path), ADAPTER_DIR)
        for name in names:
            path = os.path.join(out_dir, f"{name}.pt")
            model.save_adapters(path, names=[name])
            logger.info(f"saved adapter {name!r} ({num_updates} updates) to {path}")
