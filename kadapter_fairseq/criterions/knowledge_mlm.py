"""Cross-entropy of the masked object over the base's vocabulary; masked-object accuracy (P@1).

One masked position per example (``knowledge_mlm``), scored by the base's masked-LM head over the
fused feature (``model(..., masked_tokens=...)``). ``p@1`` is the share of examples whose top-scored
token over the *whole* vocabulary is the object; the LAMA probe ranks only whole-word tokens, so
its P@1 on the same sentences is at least this.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from .summed_metrics import log_loss, total


@dataclass
class KnowledgeMLMCriterionConfig(FairseqDataclass):
    pass


@register_criterion("knowledge_mlm", dataclass=KnowledgeMLMCriterionConfig)
class KnowledgeMLMCriterion(FairseqCriterion):
    def __init__(self, task):
        super().__init__(task)
        self.mask_idx = task.mask_idx

    def forward(self, model, sample, reduce=True):
        src = sample["net_input"]["src_tokens"]
        masked = src.eq(self.mask_idx)
        target = sample["target"]
        if int(masked.sum()) != target.numel():
            raise ValueError(f"{int(masked.sum())} masked positions for {target.numel()} targets: one <mask> per example expected")
        logits, _ = model(src, masked_tokens=masked, cached_features=sample["net_input"].get("cached_features"))
        loss = F.nll_loss(F.log_softmax(logits, dim=-1, dtype=torch.float32), target, reduction="sum")
        sample_size = target.numel()
        logging_output = {
            "loss": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": sample_size,
            "ncorrect": int(logits.argmax(-1).eq(target).sum()),
        }
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        log_loss(logging_outputs, round=3)
        n = total(logging_outputs, "sample_size")
        if n:
            metrics.log_scalar("p@1", total(logging_outputs, "ncorrect") / n, n, round=4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
