"""Span QA: cross-entropy on answer starts and ends; EM/F1 over whole questions.

Training pairs all contain an answer. In evaluation a batch holds whole
questions (``QuestionGroupDataset``), so the best span over all paragraphs of a
question is chosen here and scored with the scorer's own EM/F1 functions.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics

from ..data.encoding import IGNORE_INDEX
from ..scoring.qa import fraction, qa_scores
from ..tasks.span_qa import pick_answer
from .summed_metrics import log_loss, log_sums


@dataclass
class SpanQACriterionConfig(FairseqDataclass):
    pass


def predict_answers(start_logits, end_logits, sample, max_answer_len):
    """The best answer text of every question in a collated batch, in batch order."""
    rows = [[] for _ in sample["questions"]]
    for row, (group, meta) in enumerate(zip(sample["group"].tolist(), sample["pairs"])):
        paragraph = sample["questions"][group]["paragraphs"][meta["paragraph"]]
        rows[group].append((row, paragraph, meta["offset"], meta["spans"]))
    return [pick_answer(start_logits, end_logits, pairs, max_answer_len) for pairs in rows]


@register_criterion("span_qa", dataclass=SpanQACriterionConfig)
class SpanQACriterion(FairseqCriterion):
    def forward(self, model, sample, reduce=True):
        tokens = sample["net_input"]["src_tokens"]
        logits, _ = model(
            tokens, classification_head_name=self.task.cfg.head_name, cached_features=sample["net_input"].get("cached_features")
        )
        start_logits, end_logits = logits[..., 0], logits[..., 1]
        positions = sample["positions"]
        answered = positions[:, 0] != IGNORE_INDEX
        n_answered = int(answered.sum())
        if n_answered:
            start_loss = F.cross_entropy(start_logits[answered].float(), positions[answered, 0], reduction="sum")
            end_loss = F.cross_entropy(end_logits[answered].float(), positions[answered, 1], reduction="sum")
            loss = (start_loss + end_loss) / 2
        else:
            loss = logits.sum() * 0.0  # keeps the graph for batches of unanswerable pairs
        logging_output = {
            "loss": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": tokens.size(0),
            "sample_size": n_answered,
            "npairs_answered": n_answered,
        }
        if not model.training:
            with torch.no_grad():
                answers = predict_answers(start_logits.detach(), end_logits.detach(), sample, self.task.cfg.max_answer_len)
            em = f1 = 0.0
            for predicted, question in zip(answers, sample["questions"]):
                e, f = qa_scores(predicted, question["answers"])
                em += e
                f1 += f
            logging_output.update(em_sum=em, f1_sum=f1, nquestions=len(answers))
        return loss, n_answered, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        log_loss(logging_outputs, round=3)
        if any("nquestions" in log for log in logging_outputs):
            log_sums(logging_outputs, ["em_sum", "f1_sum", "nquestions"])
            metrics.log_derived("exact_match", _exact_match)
            metrics.log_derived("f1", _f1)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True


def _exact_match(meters):
    return round(fraction(meters["_em_sum"].sum, meters["_nquestions"].sum), 4)


def _f1(meters):
    return round(fraction(meters["_f1_sum"].sum, meters["_nquestions"].sum), 4)
