"""Cross-entropy over the four CosmosQA choices; accuracy from summed counts."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics

from ..scoring.qa import fraction
from .summed_metrics import log_loss, log_sums, total


@dataclass
class CosmosQACriterionConfig(FairseqDataclass):
    pass


@register_criterion("cosmosqa", dataclass=CosmosQACriterionConfig)
class CosmosQACriterion(FairseqCriterion):
    def forward(self, model, sample, reduce=True):
        inputs = [sample[f"net_input{k + 1}"] for k in range(self.task.cfg.num_choices)]
        scores = self.task.score_choices(
            model, [i["src_tokens"] for i in inputs], [i.get("cached_features") for i in inputs]
        )
        bsz = scores.size(0)
        logging_output = {"ntokens": sample["ntokens"], "nsentences": bsz, "sample_size": bsz}
        if "target" in sample:
            target = sample["target"].view(-1)
            lprobs = F.log_softmax(scores, dim=-1, dtype=torch.float32)
            loss = F.nll_loss(lprobs, target, reduction="sum")
            logging_output["ncorrect"] = int((scores.argmax(dim=-1) == target).sum())
        else:
            loss = scores.sum() * 0.0
        logging_output["loss"] = loss.data
        return loss, bsz, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        log_loss(logging_outputs, round=3)
        if any("ncorrect" in log for log in logging_outputs):
            log_sums(logging_outputs, ["ncorrect"])
            metrics.log_scalar_sum("_nexamples", total(logging_outputs, "nsentences"))
            metrics.log_derived("accuracy", _accuracy)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True


def _accuracy(meters):
    return round(fraction(meters["_ncorrect"].sum, meters["_nexamples"].sum), 4)
