"""The frozen-base invariant: a run that freezes the base leaves every base tensor as ``model.pt`` holds it.

"As it holds it" means *cast to the run's precision*: a ``common.bf16=true`` run computes with the
base stored in bf16 (fairseq's Trainer casts the whole model once), so the base it carries is
``model.pt``'s tensor rounded to bf16, and fairseq writes checkpoints in fp32 (``utils.move_to_cpu``
widens 16-bit tensors), i.e. that rounded value widened back. In an fp32 run the invariant is
bit-identity with ``model.pt``. Any update of a frozen weight moves it by at least one unit in the
last place of the run's type, so the comparison is exact (``torch.equal``) in every precision.

    python -m kadapter_fairseq.tools.base_check BASE/model.pt checkpoints/checkpoint_last.pt [...]
"""
import argparse
import sys
from typing import Dict, Iterable, List, Optional

import torch

from ..errors import CheckpointError, KAdapterError

BASE_PREFIX = "encoder."
LM_HEAD_PREFIX = "encoder.lm_head."
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _load(path, what):
    from .. import checkpoint_utils as ku

    state = ku.load_file(path, what)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{path} is not a fairseq checkpoint (no 'model' state dict)")
    return state


def base_tensors(base_model: str) -> Dict[str, torch.Tensor]:
    """``model.pt``'s base tensors (``encoder.*``), keyed as a roberta_kadapter checkpoint keys them."""
    tensors = {k: v for k, v in _load(base_model, "base RoBERTa checkpoint")["model"].items() if k.startswith(BASE_PREFIX)}
    if not tensors:
        raise CheckpointError(f"{base_model} holds no base tensors ({BASE_PREFIX}*)")
    return tensors


def run_precision(state: dict) -> str:
    """``fp32``, ``bf16`` or ``fp16``: what the run that wrote ``state`` computed in (its ``common`` config)."""
    cfg = state.get("cfg") or {}
    common = cfg.get("common") if hasattr(cfg, "get") else None
    common = common or {}

    def flag(name):
        return bool(common.get(name, False)) if hasattr(common, "get") else bool(getattr(common, name, False))

    if flag("bf16") or flag("memory_efficient_bf16"):
        return "bf16"
    if flag("fp16") or flag("memory_efficient_fp16"):
        return "fp16"
    return "fp32"  # amp keeps fp32 weights


def trained_base_keys(state: dict) -> List[str]:
    """Base keys the run was configured to train although the base was frozen: the masked-LM head's
    own layers with ``model.train_lm_head`` (its output projection is the tied input embedding, frozen)."""
    model_cfg = (state.get("cfg") or {}).get("model") or {}
    get = model_cfg.get if hasattr(model_cfg, "get") else (lambda k, d=None: getattr(model_cfg, k, d))
    if not get("train_lm_head", False):
        return []
    return [k for k in state["model"] if k.startswith(LM_HEAD_PREFIX) and k != LM_HEAD_PREFIX + "weight"]


def compare_base(base: Dict[str, torch.Tensor], trained: Dict[str, torch.Tensor], precision: str = "fp32",
                 exclude: Iterable[str] = ()) -> dict:
    """Every tensor of ``base`` (but ``exclude``) against ``trained``, after casting the base to ``precision``.

    Returns ``{"precision", "tensors", "missing", "changed", "identical", "excluded"}``; ``changed``
    lists the keys whose checkpoint tensor differs from ``model.pt``'s cast to the run's precision
    (and stored back in the checkpoint's own type)."""
    if precision not in DTYPES:
        raise KAdapterError(f"unknown precision {precision!r}; expected one of {sorted(DTYPES)}")
    dtype = DTYPES[precision]
    exclude = set(exclude)
    base = {k: v for k, v in base.items() if k not in exclude}
    missing, changed = [], []
    for key, value in base.items():
        if key not in trained:
            missing.append(key)
            continue
        got = trained[key]
        expected = value.to(dtype).to(got.dtype) if value.is_floating_point() else value
        if got.shape != expected.shape or not torch.equal(got, expected):
            changed.append(key)
    return {"precision": precision, "tensors": len(base), "missing": missing, "changed": changed,
            "identical": not missing and not changed, "excluded": sorted(exclude)}


def check_checkpoint(base_model: str, checkpoint: str, precision: Optional[str] = None,
                     base: Optional[Dict[str, torch.Tensor]] = None) -> dict:
    """:func:`compare_base` for one checkpoint; ``precision`` defaults to the run's own (its config).
    ``base``: ``base_tensors(base_model)`` when the caller has read them already."""
    state = _load(checkpoint, "fairseq checkpoint")
    base = base if base is not None else base_tensors(base_model)
    return compare_base(base, state["model"], precision or run_precision(state), exclude=trained_base_keys(state))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m kadapter_fairseq.tools.base_check", description=__doc__.split("\n\n")[0])
    p.add_argument("base_model", help="the base's model.pt")
    p.add_argument("checkpoints", nargs="+", help="checkpoints of runs that froze the base")
    p.add_argument("--precision", choices=sorted(DTYPES), help="override the precision read from each checkpoint's config")
    a = p.parse_args(argv)
    try:
        base = base_tensors(a.base_model)
        bad = 0
        for path in a.checkpoints:
            r = check_checkpoint(a.base_model, path, a.precision, base)
            state = "unchanged" if r["identical"] else f"CHANGED ({len(r['changed'])} changed, {len(r['missing'])} missing)"
            print(f"{path}: {r['tensors']} base tensors, {r['precision']} run: {state}")
            bad += not r["identical"]
    except KAdapterError as e:
        sys.exit(f"base_check: {e}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
