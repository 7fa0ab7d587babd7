"""Plain text side files, one item per line (no fairseq or torch needed: the scorer
and the converters read and write them too)."""
import os
from typing import Iterable, List

from ..errors import DataError


def load_raw_lines(path) -> List[str]:
    if not os.path.isfile(path):
        raise DataError(path, None, "file not found (was the data binarized with the data_prep command for this task?)")
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def write_lines(path, lines: Iterable[str]):
    """The writer twin of ``load_raw_lines``: one item per line."""
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
