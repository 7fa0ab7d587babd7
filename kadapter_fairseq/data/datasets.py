"""Datasets for the raw side files of the binarized layout (positions, labels, heads).

Side files are plain text, one line per example, read with line numbers so that
a bad value is reported as ``file:line``.
"""
from typing import List, Sequence

import numpy as np
import torch
from fairseq.data import FairseqDataset, data_utils

from ..errors import DataError
from .text_files import load_raw_lines


def load_int_lists(path) -> List[List[int]]:
    out = []
    for n, line in enumerate(load_raw_lines(path), 1):
        try:
            out.append([int(x) for x in line.split()])
        except ValueError:
            raise DataError(path, n, f"expected space-separated integers, got {line[:80]!r}") from None
    return out


def check_count(path, items: Sequence, expected: int):
    if len(items) != expected:
        raise DataError(path, None, f"has {len(items)} lines but the binarized input has {expected} examples")


class RawIntListDataset(FairseqDataset):
    """Variable-length int lists, right-padded with ``pad`` into a B×T LongTensor."""

    def __init__(self, values: List[List[int]], pad: int):
        self.values = [torch.tensor(v, dtype=torch.long) for v in values]
        self.pad = pad
        self._sizes = np.array([len(v) for v in values], dtype=np.int64)

    def __getitem__(self, index):
        return self.values[index]

    def __len__(self):
        return len(self.values)

    def collater(self, samples):
        if len(samples) == 0:
            return torch.empty(0, dtype=torch.long)
        return data_utils.collate_tokens(samples, self.pad, left_pad=False)

    @property
    def sizes(self):
        return self._sizes

    def num_tokens(self, index):
        return self._sizes[index]

    def size(self, index):
        return self._sizes[index]


class RawLabelListDataset(FairseqDataset):
    """Multi-hot targets (entity typing): each item is a list of label ids."""

    def __init__(self, label_ids: List[List[int]], num_labels: int):
        self.targets = []
        for ids in label_ids:
            t = torch.zeros(num_labels)
            t[ids] = 1.0
            self.targets.append(t)

    def __getitem__(self, index):
        return self.targets[index]

    def __len__(self):
        return len(self.targets)

    def collater(self, samples):
        return torch.stack(samples) if samples else torch.empty(0)
