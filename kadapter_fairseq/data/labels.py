"""Label vocabularies: one label per line, index = line number.

Tasks binarize labels against a fixed, ordered list so that label ids never
depend on corpus frequencies; the list travels with the binarized data
(``<data>/labels.txt``) and with exported heads.
"""
import os
from typing import Iterable, List

from ..errors import DataError, KAdapterError


class LabelVocabulary:
    def __init__(self, labels: Iterable[str]):
        self.labels: List[str] = list(labels)
        self.index = {}
        for i, label in enumerate(self.labels):
            if label in self.index:
                raise KAdapterError(f"duplicate label {label!r} in label vocabulary")
            self.index[label] = i

    def __len__(self):
        return len(self.labels)

    def __contains__(self, label):
        return label in self.index

    def __getitem__(self, i):
        return self.labels[i]

    def encode(self, label, path=None, line=None) -> int:
        """Index of ``label``; an unknown label is a ``DataError`` naming where it came from."""
        try:
            return self.index[label]
        except KeyError:
            known = ", ".join(self.labels[:10]) + (" ..." if len(self.labels) > 10 else "")
            raise DataError(path, line, f"label {label!r} is not in the label set ({len(self)} labels: {known})") from None

    @classmethod
    def load(cls, path):
        if not os.path.isfile(path):
            raise KAdapterError(f"label vocabulary not found: {path}")
        with open(path, encoding="utf-8") as f:
            labels = [line.rstrip("\n") for line in f]
        for n, label in enumerate(labels, 1):
            if not label.strip():
                raise DataError(path, n, "empty label")
        return cls(labels)

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            for label in self.labels:
                f.write(label + "\n")
