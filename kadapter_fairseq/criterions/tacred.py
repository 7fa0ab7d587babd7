"""Cross-entropy over relations, with the standard TACRED P/R/F1 from summable counts."""
from dataclasses import dataclass

import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from ..scoring.classification import relation_counts, relation_prf
from .summed_metrics import log_loss, log_sums


@dataclass
class TacredCriterionConfig(FairseqDataclass):
    pass


@register_criterion("tacred", dataclass=TacredCriterionConfig)
class TacredCriterion(FairseqCriterion):
    def forward(self, model, sample, reduce=True):
        logits = self.task.head_logits(model, sample["net_input"])
        targets = sample["target"].view(-1)
        loss = F.cross_entropy(logits.float(), targets, reduction="sum")
        guesses = logits.detach().argmax(dim=-1)
        counts = relation_counts(zip(targets.tolist(), guesses.tolist()), negative=self.task.negative_index)
        logging_output = {
            "loss": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": targets.numel(),
            "sample_size": targets.numel(),
            "ncorrect": float((guesses == targets).sum().item()),
            "rel_tp": counts["tp"],
            "rel_fp": counts["fp"],
            "rel_fn": counts["fn"],
        }
        return loss, targets.numel(), logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        log_loss(logging_outputs, round=4)
        if not any("rel_tp" in log for log in logging_outputs):
            return
        log_sums(logging_outputs, ["ncorrect", "nsentences", "rel_tp", "rel_fp", "rel_fn"])
        metrics.log_derived("accuracy", lambda m: round(m["_ncorrect"].sum / max(m["_nsentences"].sum, 1), 4))
        for i, name in enumerate(("precision", "recall", "f1")):
            metrics.log_derived(
                name, lambda m, i=i: round(relation_prf(m["_rel_tp"].sum, m["_rel_fp"].sum, m["_rel_fn"].sum)[i], 4)
            )

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
