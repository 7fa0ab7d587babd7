"""Entity typing (OpenEntity, FIGER): multi-label typing of an ``@``-marked mention (docs/reference/kadapter.md §3).

The ``span`` head reads the fused feature at the first ``@``; targets are
multi-hot rows over ``labels.txt``. ``typing_scheme`` picks the decision rule:
OpenEntity predicts every type whose logit is > 0 (possibly none); FIGER also
always predicts the top-scoring type.
"""
from dataclasses import dataclass, field

import torch
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task

from .marked_classification import MarkedClassificationConfig, MarkedClassificationTask

TYPING_SCHEMES = ("openentity", "figer")


def decide_types(logits: torch.Tensor, at_least_one: bool) -> torch.Tensor:
    """Boolean B x C: logit > 0, plus each row's argmax when ``at_least_one``."""
    chosen = logits > 0
    if at_least_one and logits.numel():
        chosen[torch.arange(logits.size(0), device=logits.device), logits.argmax(dim=-1)] = True
    return chosen


@dataclass
class EntityTypingConfig(MarkedClassificationConfig):
    typing_scheme: ChoiceEnum(list(TYPING_SCHEMES)) = field(
        default="openentity",
        metadata={"help": "openentity: types with logit > 0; figer: also the top type, so never none"},
    )


@register_task("entity_typing", dataclass=EntityTypingConfig)
class EntityTypingTask(MarkedClassificationTask):
    NAME = "entity_typing"
    HEAD_TYPE = "span"
    NUM_POSITIONS = 1

    @property
    def at_least_one_type(self) -> bool:
        return self.cfg.typing_scheme == "figer"

    def build_targets(self, label_lines, path):
        rows = []
        for i, line in enumerate(label_lines):
            row = [0] * len(self.labels)
            for name in filter(None, line.split("\t")):
                row[self.labels.encode(name, path, i + 1)] = 1
            rows.append(row)
        return rows

    def label_names(self, chosen_row):
        """Type names of one row of :func:`decide_types`."""
        return [self.labels[int(i)] for i in torch.nonzero(chosen_row, as_tuple=False).flatten().tolist()]
