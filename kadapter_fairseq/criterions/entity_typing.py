"""Binary cross-entropy over entity types, with the typing metrics as summable counts.

The loss is summed over every (example, type) cell and ``sample_size`` is the
number of cells, so the optimised quantity is the mean BCE the authors'
``BCEWithLogitsLoss()`` computes and their learning rates carry over.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from ..scoring.classification import TYPING_COUNT_KEYS, typing_counts, typing_metrics
from ..tasks.entity_typing import decide_types
from .summed_metrics import log_loss, log_sums

LOGGED_METRICS = ("precision", "recall", "f1", "macro_f1", "strict_accuracy")


@dataclass
class EntityTypingCriterionConfig(FairseqDataclass):
    pass


def _index_sets(mask: torch.Tensor):
    return [set(torch.nonzero(row, as_tuple=False).flatten().tolist()) for row in mask]


@register_criterion("entity_typing", dataclass=EntityTypingCriterionConfig)
class EntityTypingCriterion(FairseqCriterion):
    def forward(self, model, sample, reduce=True):
        logits = self.task.head_logits(model, sample["net_input"])
        targets = sample["target"]
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="sum")
        chosen = decide_types(logits.detach(), self.task.at_least_one_type)
        counts = typing_counts(zip(_index_sets(targets.bool()), _index_sets(chosen)))
        logging_output = {
            "loss": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": targets.size(0),
            "sample_size": targets.numel(),
        }
        logging_output.update({f"typing_{k}": v for k, v in counts.items()})
        return loss, targets.numel(), logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        log_loss(logging_outputs, round=4)
        if not any("typing_n" in log for log in logging_outputs):
            return
        log_sums(logging_outputs, [f"typing_{key}" for key in TYPING_COUNT_KEYS])
        for name in LOGGED_METRICS:
            metrics.log_derived(name, lambda meters, name=name: round(typing_metrics(_sums(meters))[name], 4))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True


def _sums(meters):
    return {key: meters[f"_typing_{key}"].sum for key in TYPING_COUNT_KEYS}
