"""Cross-entropy for relation classification; accuracy, micro-F1 and macro-F1.

Every example gets exactly one predicted relation, so micro-F1 over all
relations equals accuracy; both are reported because the paper names both.
Macro-F1 averages per-relation F1 over the relations that occur (as gold or
prediction) in the evaluated set. Per-relation tp/fp/fn are logged as summable
counts during validation only (``_tp_<id>``, hidden from the progress line) so
the F1 is exact over the whole validation set and across workers.

With the task's ``dependency_data`` set (the multitask baseline) a batch holds
relation rows (target >= 0) and dependency rows (target = -100); each kind goes
through its own head and the loss is ``mean relation CE +
dependency_weight * mean pointer CE`` with a sample size of 1.
"""
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from ..data.encoding import IGNORE_INDEX
from ..data.feature_cache import select_rows
from ..scoring.classification import prf
from .dependency_head_prediction import dependency_loss, reduce_dependency_metrics


@dataclass
class RelationPretrainCriterionConfig(FairseqDataclass):
    dependency_weight: float = field(default=1.0, metadata={"help": "multitask: weight of the dependency loss"})
    per_relation_metrics: bool = field(
        default=True, metadata={"help": "log per-relation counts in validation (needed for macro-F1)"}
    )


def per_class_counts(pred, gold, num_classes):
    """tp, fp, fn per class as lists of ints."""
    right = pred.eq(gold)
    tp = torch.bincount(gold[right], minlength=num_classes)
    fp = torch.bincount(pred[~right], minlength=num_classes)
    fn = torch.bincount(gold[~right], minlength=num_classes)
    return tp.tolist(), fp.tolist(), fn.tolist()


def macro_f1(meters) -> float:
    scores = []
    for key in meters.keys():
        if not key.startswith("_tp_"):
            continue
        c = key[len("_tp_"):]
        tp, fp, fn = (float(utils.item(meters[f"_{k}_{c}"].sum)) for k in ("tp", "fp", "fn"))
        if tp + fp + fn > 0:
            scores.append(prf(tp, fp, fn)[2])
    return round(sum(scores) / len(scores), 4) if scores else 0.0


@register_criterion("relation_pretrain", dataclass=RelationPretrainCriterionConfig)
class RelationPretrainCriterion(FairseqCriterion):
    def __init__(self, task, dependency_weight=1.0, per_relation_metrics=True):
        super().__init__(task)
        self.head_name = task.cfg.head_name
        self.num_classes = len(task.labels)
        self.dependency_head_name = task.cfg.dependency_head_name
        self.dependency_weight = dependency_weight
        self.per_relation_metrics = per_relation_metrics

    def relation_loss(self, model, src_tokens, positions, target, logging_output, cached_features=None):
        logits, _ = model(
            src_tokens, classification_head_name=self.head_name, positions=positions, cached_features=cached_features
        )
        loss = F.nll_loss(F.log_softmax(logits, dim=-1, dtype=torch.float32), target, reduction="sum")
        pred = logits.argmax(-1)
        logging_output["rel_loss"] = loss.data
        logging_output["rel_examples"] = target.numel()
        logging_output["ncorrect"] = int(pred.eq(target).sum())
        if self.per_relation_metrics and not model.training:
            for name, counts in zip(("tp", "fp", "fn"), per_class_counts(pred, target, self.num_classes)):
                for c, v in enumerate(counts):
                    logging_output[f"_{name}_{c}"] = v
        return loss

    def forward(self, model, sample, reduce=True):
        src, positions, target = sample["net_input"]["src_tokens"], sample["positions"], sample["target"]
        cached = sample["net_input"].get("cached_features")
        logging_output = {"ntokens": sample["ntokens"], "nsentences": sample["nsentences"]}
        if self.per_relation_metrics and not model.training:
            # every validation batch logs every class, so the keys agree across workers
            logging_output.update({f"_{k}_{c}": 0 for k in ("tp", "fp", "fn") for c in range(self.num_classes)})
        if "dep_target" not in sample:
            loss = self.relation_loss(model, src, positions, target, logging_output, cached)
            sample_size = target.numel()
        else:
            is_rel = target.ne(IGNORE_INDEX)
            # a batch may lack one kind: log zeros so every batch has the same keys
            logging_output.update(rel_loss=0.0, rel_examples=0, ncorrect=0, dep_loss=0.0, words=0, heads_correct=0)
            loss = src.new_zeros((), dtype=torch.float32)
            if is_rel.any():
                rel = self.relation_loss(
                    model, src[is_rel], positions[is_rel], target[is_rel], logging_output, select_rows(cached, is_rel)
                )
                loss = loss + rel / is_rel.sum()
            if (~is_rel).any():
                dep, words, correct = dependency_loss(
                    model, src[~is_rel], sample["dep_target"][~is_rel], self.dependency_head_name,
                    select_rows(cached, ~is_rel),
                )
                logging_output.update(dep_loss=dep.data, words=words, heads_correct=correct)
                if words:
                    loss = loss + self.dependency_weight * dep / words
            sample_size = 1
        logging_output["loss"] = loss.data
        logging_output["sample_size"] = sample_size
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            return float(utils.item(sum(log.get(key, 0) for log in logging_outputs)))

        sample_size = total("sample_size")
        if sample_size:
            metrics.log_scalar("loss", total("loss") / sample_size / math.log(2), sample_size, round=3)
        n = total("rel_examples")
        if n:
            if any("dep_loss" in log for log in logging_outputs):
                metrics.log_scalar("rel_loss", total("rel_loss") / n / math.log(2), n, round=3)
            # fractions in [0, 1], like every other criterion here and kadapter-score
            accuracy = total("ncorrect") / n
            metrics.log_scalar("accuracy", accuracy, n, round=4)
            metrics.log_scalar("micro_f1", accuracy, n, round=4)
        class_keys = [k for k in (logging_outputs[0] if logging_outputs else {}) if k.startswith("_")]
        if class_keys:
            for key in class_keys:
                metrics.log_scalar_sum(key, total(key))
            metrics.log_derived("macro_f1", macro_f1)
        reduce_dependency_metrics(logging_outputs, loss_key="dep_loss")

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
