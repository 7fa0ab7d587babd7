"""Seeded subsamples of a training split, for low-resource rows of an experiment grid.

Every downstream converter takes the same options (``add_subsample_args``):

- ``--fraction F`` (0 < F <= 1): keep ``round(F * n)`` training examples, at least one;
- ``--max-examples N``: keep at most N training examples (with ``--fraction``, the smaller count wins);
- ``--max-examples-per-label N`` (classification converters): at most N training examples per
  label. An example with several labels (entity typing) is taken only while every one of its
  labels is under the cap, so the cap holds for each label; an example without labels counts
  under the label ``(none)``;
- ``--seed S``: the subsample's seed (default 1).

The examples are visited in one seeded random order; the per-label cap is applied along that
order first, then the first ``min(round(F * n), N)`` remaining ones are kept. The kept examples
stay in their original order, so a subsample is a subset of the full split with the same ids,
and the same seed gives the same subset. Validation and test splits are never subsampled. What
was asked, the seed and the counts before and after (per label too, where there are labels)
go to ``prep.json`` under ``subsample``.
"""
import argparse
import random
from collections import Counter
from dataclasses import dataclass
from typing import List, Optional, Sequence

from kadapter_fairseq.errors import KAdapterError

NO_LABEL = "(none)"


def fraction_type(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0.0 < value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def add_subsample_args(parser, per_label: bool = False):
    g = parser.add_argument_group("training subsample (the training split only; recorded in prep.json)")
    g.add_argument("--fraction", type=fraction_type, metavar="F",
                   help="keep this share of the training examples, in (0, 1]")
    g.add_argument("--max-examples", type=positive_int, metavar="N", help="keep at most this many training examples")
    if per_label:
        g.add_argument("--max-examples-per-label", type=positive_int, metavar="N",
                       help="keep at most this many training examples of each label (e.g. 10, 50, 200 per relation)")
    g.add_argument("--seed", type=int, default=1, metavar="S", help="seed of the subsample (default 1)")


@dataclass
class Subsample:
    fraction: Optional[float] = None
    max_examples: Optional[int] = None
    max_examples_per_label: Optional[int] = None
    seed: int = 1

    @classmethod
    def from_args(cls, args) -> "Subsample":
        sub = cls(getattr(args, "fraction", None), getattr(args, "max_examples", None),
                  getattr(args, "max_examples_per_label", None), getattr(args, "seed", 1))
        sub.check()
        return sub

    def check(self):
        """The same rules as the command-line types, for callers that build one in Python."""
        if self.fraction is not None and not 0.0 < self.fraction <= 1.0:
            raise KAdapterError(f"--fraction must be in (0, 1], got {self.fraction}")
        for name in ("max_examples", "max_examples_per_label"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise KAdapterError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")

    @property
    def requested(self) -> bool:
        return any(v is not None for v in (self.fraction, self.max_examples, self.max_examples_per_label))

    def require_train(self, splits):
        if self.requested and "train" not in splits:
            raise KAdapterError("--fraction/--max-examples/--max-examples-per-label subsample the training split, "
                                "but no --train was given")

    def select(self, n: int, labels: Optional[Sequence[Sequence[str]]] = None) -> List[int]:
        """Indices (ascending) of the examples kept out of ``n``; ``labels[i]`` are example i's labels."""
        if self.max_examples_per_label is not None and labels is None:
            raise KAdapterError("--max-examples-per-label needs labelled examples")
        order = list(range(n))
        random.Random(self.seed).shuffle(order)
        if self.max_examples_per_label is not None:
            taken, capped = Counter(), []
            for i in order:
                names = set(labels[i]) or {NO_LABEL}
                if all(taken[name] < self.max_examples_per_label for name in names):
                    capped.append(i)
                    taken.update(names)
            order = capped
        target = len(order)
        if self.fraction is not None:
            target = min(target, max(1, int(self.fraction * n + 0.5)))
        if self.max_examples is not None:
            target = min(target, self.max_examples)
        return sorted(order[:target])

    def apply(self, examples: Sequence, labels_of=None):
        """``(kept examples, record for prep.json)``; the record is None when nothing was asked."""
        if not self.requested:
            return list(examples), None
        labels = [list(labels_of(ex)) for ex in examples] if labels_of is not None else None
        keep = self.select(len(examples), labels)
        record = {
            "split": "train",
            "fraction": self.fraction,
            "max_examples": self.max_examples,
            "max_examples_per_label": self.max_examples_per_label,
            "seed": self.seed,
            "before": len(examples),
            "after": len(keep),
        }
        if labels is not None:
            record["labels_before"] = _label_counts(labels)
            record["labels_after"] = _label_counts(labels[i] for i in keep)
        return [examples[i] for i in keep], record


def _label_counts(label_lists) -> dict:
    counts = Counter(name for names in label_lists for name in (set(names) or {NO_LABEL}))
    return dict(sorted(counts.items()))


def describe(record: Optional[dict]) -> str:
    """One printable line for a subsample record."""
    asked = [f"--{k.replace('_', '-')} {record[k]}" for k in ("fraction", "max_examples", "max_examples_per_label")
             if record[k] is not None]
    return f"train subsample ({', '.join(asked)}, --seed {record['seed']}): kept {record['after']} of {record['before']}"
