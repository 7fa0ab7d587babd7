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

from ..predict import max_len_for, predict_marked, register_predictor, require_task
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


def _predict_typing(hub, input_path, args, at_least_one):
    from ..data.downstream import encode_typing, read_typing_records
    from ..data.encoding import WordEncoder

    require_task(hub, EntityTypingTask, args.task)
    encoder, max_len = WordEncoder(hub.bpe), max_len_for(hub, args)

    def decide(row):
        return {"labels": hub.task.label_names(decide_types(row.unsqueeze(0), at_least_one)[0])}

    yield from predict_marked(hub, args, read_typing_records(input_path),
                              lambda rec: encode_typing(encoder, rec, max_len), decide, {"labels": []})


@register_predictor("openentity")
def predict_openentity(hub, input_path, args):
    """``{"id", "labels"}``: the types whose logit is > 0 (possibly none)."""
    return _predict_typing(hub, input_path, args, at_least_one=False)


@register_predictor("figer")
def predict_figer(hub, input_path, args):
    """``{"id", "labels"}``: the types whose logit is > 0, and always the top-scoring type."""
    return _predict_typing(hub, input_path, args, at_least_one=True)
