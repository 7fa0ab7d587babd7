"""Cross-entropy over labelled positions for the dependency pointer head; reports UAS.

UAS (unlabelled attachment score) = share of words whose predicted head
position is the gold one. Only each word's first sub-word is labelled, so
counting labelled positions counts words. Counts are logged as summable
numbers (``words``, ``heads_correct``) and turned into percentages in
``reduce_metrics``, so they are exact across batches and workers.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from ..data.encoding import IGNORE_INDEX


@dataclass
class DependencyHeadPredictionCriterionConfig(FairseqDataclass):
    pass


def align_targets(target, seq_len):
    """Pad (with the ignore index) or cut ``target`` to the model's sequence length."""
    if target.size(1) < seq_len:
        return F.pad(target, (0, seq_len - target.size(1)), value=IGNORE_INDEX)
    extra = target[:, seq_len:]
    if extra.numel() and extra.ne(IGNORE_INDEX).any():
        raise ValueError("dependency targets label positions beyond the input sequence")
    return target[:, :seq_len]


def dependency_loss(model, src_tokens, target, head_name, cached_features=None):
    """``(summed loss, words, correct heads)`` for one batch of sentences."""
    logits, _ = model(src_tokens, classification_head_name=head_name, cached_features=cached_features)
    target = align_targets(target, logits.size(1))
    labelled = target.ne(IGNORE_INDEX)
    picked = logits[labelled]
    gold = target[labelled]
    loss = F.nll_loss(F.log_softmax(picked, dim=-1, dtype=torch.float32), gold, reduction="sum")
    correct = picked.argmax(-1).eq(gold).sum()
    return loss, int(labelled.sum()), int(correct)


def reduce_dependency_metrics(logging_outputs, loss_key="dep_loss"):
    words = sum(log.get("words", 0) for log in logging_outputs)
    if not words:
        return
    loss = sum(log.get(loss_key, 0) for log in logging_outputs)
    correct = sum(log.get("heads_correct", 0) for log in logging_outputs)
    words, correct = float(utils.item(words)), float(utils.item(correct))
    if loss_key != "loss":
        metrics.log_scalar(loss_key, float(utils.item(loss)) / words / math.log(2), words, round=3)
    metrics.log_scalar("uas", correct / words, words, round=4)


@register_criterion("dependency_head_prediction", dataclass=DependencyHeadPredictionCriterionConfig)
class DependencyHeadPredictionCriterion(FairseqCriterion):
    def __init__(self, task):
        super().__init__(task)
        self.head_name = task.cfg.head_name

    def forward(self, model, sample, reduce=True):
        net_input = sample["net_input"]
        loss, words, correct = dependency_loss(
            model, net_input["src_tokens"], sample["target"], self.head_name, net_input.get("cached_features")
        )
        logging_output = {
            "loss": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": words,
            "words": words,
            "heads_correct": correct,
        }
        return loss, words, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        loss = sum(log.get("loss", 0) for log in logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        if sample_size:
            metrics.log_scalar("loss", float(utils.item(loss)) / float(utils.item(sample_size)) / math.log(2), sample_size, round=3)
        reduce_dependency_metrics(logging_outputs, loss_key="loss")

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
