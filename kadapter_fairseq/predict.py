"""``kadapter-predict``: one JSON prediction per input record, keeping the record's id.

    kadapter-predict --task openentity --checkpoint checkpoints/checkpoint_best.pt \\
        --data-dir openentity-bin --input dev.json --output dev.pred.jsonl

The input is the raw dataset file in its own format; records are encoded by the
same code as the task's data_prep converter (same marking, same truncation,
``max_len`` taken from ``<data-dir>/prep.json``), so training and prediction see
identical sequences. A record that cannot be encoded (an entity span outside
its sentence, entities that do not fit ``max_len``) still gets a line, with the
empty answer and a ``"skipped"`` reason, so the output stays one line per record.

Each task module registers its predictor with ``@register_predictor(name)`` (e.g.
``tasks/entity_typing.py``, ``tasks/tacred.py``, ``tasks/cosmosqa.py``): ``fn(hub, input_path,
args) -> iterator of prediction dicts``; ``hub`` is a ``KAdapterHub`` (``.model`` in eval mode,
``.task``, ``.bpe``, ``.dictionary``). The helpers here (``max_len_for``, ``require_task``,
``classify_marked``, ``predict_marked``) are what they share.

``--bf16`` (or ``--precision bf16|auto``) stores the model in bf16 once, as a run trained with
``common.bf16=true`` computed; head logits are turned to fp32 before any decision.
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


def predict_marked(hub, args, records, encode, decide, empty):
    """The marked-classification tasks' loop (entity typing, TACRED): encode every record, classify
    the encodable ones with ``decide(logits row) -> prediction fields``, give the others ``empty``
    and a ``skipped`` reason, and keep input order."""
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
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                        help="fp32 (default); bf16: the model stored in bf16 once (as common.bf16=true trains); "
                             "auto: bf16 where the CPU has AMX/AVX512-BF16 or the GPU is sm80+, else fp32")
    parser.add_argument("--bf16", action="store_const", const="bf16", dest="precision", help="same as --precision bf16")
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

    from .atomic import atomic_open
    from .distributed import get_rank, is_master
    from .hub import KAdapterHub

    if not is_master():  # started once per rank by torchrun/srun: rank 0 alone writes the file
        print(f"kadapter-predict: rank {get_rank()}: rank 0 writes {args.output}", file=sys.stderr)
        return 0
    hub = KAdapterHub.from_checkpoint(args.checkpoint, data_dir=args.data_dir, roberta_path=args.roberta_path)
    if torch.cuda.is_available() and not args.cpu:
        hub.cuda()
    precision, reason = hub.set_precision(args.precision)  # after the move: "auto" judges the device it runs on
    if args.precision != "fp32":
        print(f"kadapter-predict: precision {precision} ({reason})", file=sys.stderr)
    hub.model.eval()
    written, skipped = 0, Counter()
    with atomic_open(args.output, "w") as f:  # a killed run leaves no half-written predictions behind
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
