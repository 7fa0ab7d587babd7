"""Training-set sizes: the one type that knows the full set, a fraction, N examples and N per label.

A size appears in five places: the experiment YAML (``fractions``, ``max_examples``,
``max_examples_per_label``), the converter's flags that draw the subsample, the run directory's
name, ``metrics.json``/``results.json`` (``{"max_examples_per_label": 10}``, ``null`` for the
full set) and the tables and plots. ``TrainSize`` converts between all of them.
"""
import math
from dataclasses import dataclass
from typing import List, Optional

FULL, FRACTION, EXAMPLES, PER_LABEL = "full", "fraction", "max_examples", "max_examples_per_label"
KINDS = (PER_LABEL, EXAMPLES, FRACTION, FULL)  # the order of tables: counts per label first, the full set last
CONVERTER_FLAGS = {FRACTION: "--fraction", EXAMPLES: "--max-examples", PER_LABEL: "--max-examples-per-label"}
YAML_KEYS = {"fractions": FRACTION, "max_examples": EXAMPLES, "max_examples_per_label": PER_LABEL}


@dataclass(frozen=True)
class TrainSize:
    """A training-set size: the full set, a fraction, N examples or N examples per label."""

    kind: str = FULL
    value: Optional[float] = None  # the fraction, or the count (an int for counts)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown training-size kind {self.kind!r}")
        if self.kind in (EXAMPLES, PER_LABEL):
            object.__setattr__(self, "value", int(self.value))
        elif self.kind == FRACTION:
            object.__setattr__(self, "value", float(self.value))

    @property
    def is_full(self) -> bool:
        return self.kind == FULL

    @property
    def label(self) -> Optional[str]:
        """The run directory's component (None for the full set, which adds none)."""
        if self.kind == FULL:
            return None
        if self.kind == FRACTION:
            return f"{self.value:g}"
        if self.kind == EXAMPLES:
            return f"{self.value}-examples"
        return f"{self.value}-per-label"

    @property
    def converter_args(self) -> List[str]:
        """The converter's flags that draw this subsample (the seed flag is the caller's)."""
        if self.kind == FULL:
            return []
        return [CONVERTER_FLAGS[self.kind], f"{self.value:g}" if self.kind == FRACTION else str(self.value)]

    @property
    def fraction(self) -> Optional[float]:
        """1.0 for the full set, the fraction, or None for counts (results.json's ``fraction``)."""
        return 1.0 if self.kind == FULL else (self.value if self.kind == FRACTION else None)

    @property
    def x(self) -> float:
        """The position on a plot's size axis: the count or fraction; the full set at infinity."""
        return math.inf if self.kind == FULL else float(self.value)

    def as_dict(self) -> Optional[dict]:
        """``{"max_examples_per_label": 10}``; None for the full set (metrics.json, results.json)."""
        return None if self.kind == FULL else {self.kind: self.value}

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "TrainSize":
        if d is None:
            return cls(FULL)
        (kind, value), = d.items()
        return cls(kind, value)

    def text(self, per: str = "label") -> str:
        """In words, for tables: ``10 per label``, ``50 examples``, ``0.1 of train``, ``full``."""
        if self.kind == FULL:
            return "full"
        if self.kind == FRACTION:
            return f"{self.value:g} of train"
        if self.kind == EXAMPLES:
            return f"{self.value} examples"
        return f"{self.value} per {per}"

    def sort_key(self):
        return (KINDS.index(self.kind), self.value if self.value is not None else 0.0)


def from_fraction(value: float) -> TrainSize:
    """A ``fractions:`` entry: 1.0 is the full set."""
    return TrainSize(FULL) if float(value) == 1.0 else TrainSize(FRACTION, float(value))


def plot_positions(sizes: List[TrainSize]) -> List[float]:
    """Positions on a log axis: the counts or fractions; the full set one step past the largest."""
    known = [s.x for s in sizes if not s.is_full]
    if not known:
        return [1.0] * len(sizes)
    full = 1.0 if all(s.kind == FRACTION for s in sizes if not s.is_full) else max(known) * 2
    return [full if s.is_full else s.x for s in sizes]
