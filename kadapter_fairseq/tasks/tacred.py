"""TACRED-style relation classification: ``@ subject @`` and ``# object #`` (docs/reference/kadapter.md §3).

The ``span_pair`` head concatenates the fused features at the first ``@`` and
the first ``#``; cross-entropy over ``labels.txt``. ``negative_label`` is the
"no relation" class the standard scorer leaves out of precision and recall.
"""
from dataclasses import dataclass, field

from fairseq.tasks import register_task

from ..errors import DataError
from ..predict import max_len_for, predict_marked, register_predictor, require_task
from ..scoring.classification import NO_RELATION
from .marked_classification import MarkedClassificationConfig, MarkedClassificationTask


@dataclass
class TacredConfig(MarkedClassificationConfig):
    negative_label: str = field(
        default=NO_RELATION, metadata={"help": "the no-relation label (left out of P/R/F1); absent = every guess counts"}
    )


@register_task("tacred", dataclass=TacredConfig)
class TacredTask(MarkedClassificationTask):
    NAME = "tacred"
    HEAD_TYPE = "span_pair"
    NUM_POSITIONS = 2

    @property
    def negative_index(self) -> int:
        """Index of ``negative_label``, or -1 when the label set has none."""
        return self.labels.index.get(self.cfg.negative_label, -1)

    def build_targets(self, label_lines, path):
        targets = []
        for i, line in enumerate(label_lines):
            names = line.split("\t")
            if len(names) != 1 or not names[0]:
                raise DataError(path, i + 1, f"expected exactly one relation label, got {line!r}")
            targets.append(self.labels.encode(names[0], path, i + 1))
        return targets


@register_predictor("tacred")
def predict_tacred(hub, input_path, args):
    """``{"id", "label"}``: the top-scoring relation; an unencodable record gets the no-relation label."""
    from ..data.downstream import encode_relation, read_relation_records
    from ..data.encoding import WordEncoder

    require_task(hub, TacredTask, args.task)
    encoder, max_len = WordEncoder(hub.bpe), max_len_for(hub, args)
    labels = hub.task.labels

    def decide(row):
        return {"label": labels[int(row.argmax())]}

    yield from predict_marked(hub, args, read_relation_records(input_path),
                              lambda rec: encode_relation(encoder, rec, max_len), decide,
                              {"label": hub.task.cfg.negative_label})
