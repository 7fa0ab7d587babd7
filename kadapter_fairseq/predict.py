"""``kadapter-predict``: one JSON prediction per input record, keeping the record's id.

    kadapter-predict --task openentity --checkpoint checkpoints/checkpoint_best.pt \\
        --data-dir openentity-bin --input dev.json --output dev.pred.jsonl

The input is the raw dataset file in its own format; records are encoded by the
same code as the task's data_prep converter (same marking, same truncation,
``max_len`` taken from ``<data-dir>/prep.json``), so training and prediction see
identical sequences. A record that cannot be encoded (an entity span outside
its sentence, entities that do not fit ``max_len``) still gets a line, with the
empty answer and a ``"skipped"`` reason, so the output stays one line per record.

Tasks register a predictor with ``@register_predictor(name)``: ``fn(hub, input_path,
args) -> iterator of prediction dicts``; ``hub`` is a ``KAdapterHub`` (``.model``
in eval mode, ``.task``, ``.bpe``, ``.dictionary``).
"""
import argparse
import json
import sys
from collections import Counter
from typing import Callable, Dict, Iterator, List, Sequence

from .errors import ConfigError, KAdapterError
from .registry import import_registering, registration

Predictor = Callable[[object, str, argparse.Namespace], Iterator[dict]]
PREDICTORS: Dict[str, Predictor] = {}

# Modules whose import registers predictors beyond the ones defined here; a module
# that is absent from this checkout is passed over.
PREDICTOR_MODULES = ("kadapter_fairseq.tasks",)


register_predictor = registration(PREDICTORS, "predictor")


# --------------------------------------------------------------------------- shared helpers

def max_len_for(hub, args) -> int:
    """``--max-len``, else the converter's (prep.json), else the task's max_positions."""
    if getattr(args, "max_len", None):
        return args.max_len
    from .data.downstream import read_prep_json

    prep = read_prep_json(hub.task.cfg.data)
    return int(prep.get("max_len") or hub.task.cfg.max_positions)


def require_task(hub, task_class, name):
    if not isinstance(hub.task, task_class):
        raise ConfigError(
            f"--task {name} needs a checkpoint trained with task {task_class.__name__}, "
            f"but this one was trained with {type(hub.task).__name__}"
        )


def classify_marked(hub, sequences: Sequence, batch_size: int) -> List:
    """Head logits (CPU float tensors) for ``MarkedSequence``s, batched by length."""
    import torch
    from fairseq.data import data_utils

    from .tasks.base import pieces_to_tokens

    dictionary = hub.dictionary
    tokens = [pieces_to_tokens(dictionary, seq.pieces) for seq in sequences]
    order = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))
    out = [None] * len(tokens)
    device = next(hub.model.parameters()).device
    with torch.no_grad():
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            src = data_utils.collate_tokens([tokens[i] for i in idx], dictionary.pad()).to(device)
            positions = torch.tensor([sequences[i].positions for i in idx], dtype=torch.long, device=device)
            logits = hub.task.head_logits(hub.model, {"src_tokens": src, "positions": positions})
            for i, row in zip(idx, logits.float().cpu()):
                out[i] = row
    return out


def _encode_all(records, encode, progress_desc):
    from tqdm import tqdm

    from .data.downstream import SkipRecord

    encoded = []
    for rec in tqdm(records, desc=progress_desc, unit="rec", disable=not sys.stderr.isatty()):
        try:
            encoded.append((rec, encode(rec), None))
        except SkipRecord as s:
            encoded.append((rec, None, s.reason))
    return encoded


def _predict_marked(hub, args, records, encode, decide, empty):
    """Shared loop: encode every record, classify the encodable ones, keep input order."""
    items = _encode_all(records, encode, f"encode {args.input}")
    ready = [(i, seq) for i, (_, seq, _) in enumerate(items) if seq is not None]
    logits = classify_marked(hub, [seq for _, seq in ready], args.batch_size)
    by_item = {i: row for (i, _), row in zip(ready, logits)}
    for i, (rec, _, reason) in enumerate(items):
        pred = {"id": rec.id}
        if reason is None:
            pred.update(decide(by_item[i]))
        else:
            pred.update(empty)
            pred["skipped"] = reason
        yield pred


# --------------------------------------------------------------------------- entity typing, TACRED

def _predict_typing(hub, input_path, args, at_least_one):
    from .data.downstream import encode_typing, read_typing_records
    from .data.encoding import WordEncoder
    from .tasks.entity_typing import EntityTypingTask, decide_types

    require_task(hub, EntityTypingTask, args.task)
    encoder, max_len = WordEncoder(hub.bpe), max_len_for(hub, args)

    def decide(row):
        return {"labels": hub.task.label_names(decide_types(row.unsqueeze(0), at_least_one)[0])}

    yield from _predict_marked(hub, args, read_typing_records(input_path),
                               lambda rec: encode_typing(encoder, rec, max_len), decide, {"labels": []})


@register_predictor("openentity")
def predict_openentity(hub, input_path, args):
    """Types whose logit is > 0 (possibly none)."""
    return _predict_typing(hub, input_path, args, at_least_one=False)


@register_predictor("figer")
def predict_figer(hub, input_path, args):
    """Types whose logit is > 0, and always the top-scoring type."""
    return _predict_typing(hub, input_path, args, at_least_one=True)


@register_predictor("tacred")
def predict_tacred(hub, input_path, args):
    """The top-scoring relation; an unencodable record gets the no-relation label."""
    from .data.downstream import encode_relation, read_relation_records
    from .data.encoding import WordEncoder
    from .tasks.tacred import TacredTask

    require_task(hub, TacredTask, args.task)
    encoder, max_len = WordEncoder(hub.bpe), max_len_for(hub, args)
    labels = hub.task.labels

    def decide(row):
        return {"label": labels[int(row.argmax())]}

    yield from _predict_marked(hub, args, read_relation_records(input_path),
                               lambda rec: encode_relation(encoder, rec, max_len), decide,
                               {"label": hub.task.cfg.negative_label})


# --------------------------------------------------------------------------- command line

def load_predictors():
    import_registering(PREDICTOR_MODULES)
    return PREDICTORS


def build_parser(tasks):
    parser = argparse.ArgumentParser(prog="kadapter-predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, choices=sorted(tasks))
    parser.add_argument("--checkpoint", required=True, help="a fairseq-train checkpoint of roberta_kadapter")
    parser.add_argument("--data-dir", required=True, help="the binarized data directory it was trained on (dict, labels, prep.json)")
    parser.add_argument("--input", required=True, help="raw dataset file in its own format")
    parser.add_argument("--output", required=True, help="JSONL file to write, one prediction per input record")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=None, help="override the converter's max_len (prep.json)")
    parser.add_argument("--roberta-path", default=None, help="base model location, when it moved since training")
    parser.add_argument("--cpu", action="store_true", help="run on CPU even when a GPU is available")
    return parser


def main(argv=None):
    predictors = load_predictors()
    args = build_parser(predictors).parse_args(argv)
    try:
        return _run(predictors, args)
    except KAdapterError as e:
        print(f"kadapter-predict: error: {e}", file=sys.stderr)
        return 2


def _run(predictors, args):
    import torch

    from .distributed import get_rank, is_master
    from .hub import KAdapterHub

    if not is_master():  # started once per rank by torchrun/srun: rank 0 alone writes the file
        print(f"kadapter-predict: rank {get_rank()}: rank 0 writes {args.output}", file=sys.stderr)
        return 0
    hub = KAdapterHub.from_checkpoint(args.checkpoint, data_dir=args.data_dir, roberta_path=args.roberta_path)
    if torch.cuda.is_available() and not args.cpu:
        hub.model.cuda()
    hub.model.eval()
    written, skipped = 0, Counter()
    with open(args.output, "w", encoding="utf-8") as f:
        for pred in predictors[args.task](hub, args.input, args):
            f.write(json.dumps(pred, ensure_ascii=False) + "\n")
            written += 1
            if "skipped" in pred:
                skipped[pred["skipped"]] += 1
    print(f"wrote {written} predictions to {args.output}", file=sys.stderr)
    for reason, n in skipped.most_common():
        print(f"  {n} records could not be encoded ({reason}): empty prediction written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    # run through the importable module so that predictors registered by other
    # modules land in the same registry as the one main() reads
    from kadapter_fairseq.predict import main as _main

    sys.exit(_main())
