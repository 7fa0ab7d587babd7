"""A trained RoBERTa out of a ``roberta_kadapter`` checkpoint, as a base directory.

A checkpoint trained with ``model.train_phase=full`` (the multitask baseline) or
``finetune`` changed the base itself. ``export_base`` writes that RoBERTa in the
layout of fairseq's released ``roberta.*`` directories, so any config takes it
as ``model.roberta_path``:

    OUT/model.pt       a fairseq RoBERTa checkpoint: the original base's config, the trained encoder
                       weights, no optimizer state; plain containers only (loads with weights_only)
    OUT/dict.txt       copied from the original base (the vocabulary did not change)
    OUT/<bpe files>    encoder.json + vocab.bpe or sentencepiece.bpe.model, copied likewise
    OUT/export.json    where it came from: checkpoint, update, original base and both fingerprints

Its fingerprint differs from the original base's (different weights), so adapter
files and checkpoints of the original base are refused on it, as they should be.
"""
import argparse
import os

import torch

from .. import atomic
from .. import checkpoint_utils as ku
from ..errors import CheckpointError, ConfigError, KAdapterError

EXPORT_FILE = "export.json"
ENCODER_PREFIX = "encoder."


def _plain(value):
    """Containers and primitives only: a Namespace or an OmegaConf node becomes a dict, recursively
    (what torch.load's weights_only default accepts)."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True, enum_to_str=True)
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _model_cfg(state, path):
    cfg = state.get("cfg")
    if cfg is None or cfg.get("model") is None:
        raise CheckpointError(f"{path} is not a checkpoint written by fairseq-train (no model config in 'cfg')")
    return _plain(cfg["model"])


def _few(keys, n=5):
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "") if keys else "none"


def base_config(base_state, base_file):
    """The original base's fairseq config as plain dicts (a released file may only have ``args``)."""
    if base_state.get("cfg") is not None:
        return _plain(base_state["cfg"])
    if base_state.get("args") is not None:
        import warnings

        from fairseq.dataclass.utils import convert_namespace_to_omegaconf
        from omegaconf import OmegaConf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # hydra's deprecation notices from fairseq's own compose call
            cfg = convert_namespace_to_omegaconf(base_state["args"])
        return _plain(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    raise CheckpointError(f"{base_file} holds no model configuration ('cfg' or 'args')")


def base_fingerprint(encoder_sd, dictionary, args):
    """As ``RobertaKAdapterModel.from_base`` computes it (keys without the ``encoder.`` prefix)."""
    return {
        "weights": ku.fingerprint_weights(encoder_sd),
        "dictionary": ku.fingerprint_dictionary(dictionary),
        "summary": f"{args.get('encoder_layers', '?')} layers, H={args.get('encoder_embed_dim', '?')}, "
                   f"vocab {len(dictionary)}",
    }


def export_base(checkpoint, out_dir, roberta_path=None, force=False):
    """Write the base directory described in the module docstring; returns the export record.

    ``roberta_path`` replaces the checkpoint's ``model.roberta_path`` when the
    original base moved; it must be the base the checkpoint started from (checked
    by fingerprint when the checkpoint records one).
    """
    from ..bpe import find_bpe_files
    from ..data.dictionary import load_roberta_dictionary
    from ..models.roberta_kadapter import TRAIN_PHASES, _fp_from_tensor, load_base_checkpoint, resolve_base_path

    checkpoint = os.fspath(checkpoint)
    state = ku.load_file(checkpoint, "fairseq checkpoint")
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{checkpoint} is not a checkpoint written by fairseq-train (no 'model' entry)")
    model_cfg = _model_cfg(state, checkpoint)
    name = model_cfg.get("_name") or model_cfg.get("arch") or "?"
    if not str(name).startswith("roberta_kadapter"):
        raise CheckpointError(f"{checkpoint} holds a {name!r} model, not roberta_kadapter: nothing to export as a base")
    phase = model_cfg.get("train_phase")
    if phase not in TRAIN_PHASES:
        raise CheckpointError(f"{checkpoint}: unknown model.train_phase {phase!r}")
    if not TRAIN_PHASES[phase][0]:
        raise CheckpointError(
            f"{checkpoint} was trained with model.train_phase={phase}, which keeps RoBERTa frozen: its base is the "
            f"original one ({model_cfg.get('roberta_path')}) unchanged. Only full or finetune checkpoints have a new "
            "base to export; export this one's adapters with `kadapter-export CHECKPOINT OUT.pt`"
        )

    original = roberta_path or model_cfg.get("roberta_path")
    try:
        base_file = resolve_base_path(original, model_cfg.get("roberta_checkpoint") or "model.pt")
    except ConfigError as e:
        # dict.txt, the tokenizer files and the base's config come from the original base
        if roberta_path:
            raise ConfigError(f"--roberta-path {roberta_path}: no base RoBERTa there ({e})") from None
        raise ConfigError(f"{checkpoint} was trained from model.roberta_path={original!r}, which is gone ({e}): pass "
                          "--roberta-path the directory of that base") from None
    base_dir = original if os.path.isdir(original) else os.path.dirname(base_file)
    if os.path.abspath(out_dir) == os.path.abspath(base_dir):
        raise ConfigError(f"the output directory {out_dir} is the original base's directory: choose another one")
    if os.path.exists(os.path.join(out_dir, "model.pt")) and not force:
        raise ConfigError(f"{os.path.join(out_dir, 'model.pt')} exists; --force overwrites it")

    base_state = ku.load_file(base_file, "base RoBERTa checkpoint")
    base_args, original_sd = load_base_checkpoint(base_file)
    dictionary = load_roberta_dictionary(os.path.join(base_dir, "dict.txt"), "the original base's directory holds it")
    original_fp = base_fingerprint(original_sd, dictionary, base_args)

    trained_sd = {k[len(ENCODER_PREFIX):]: v for k, v in state["model"].items() if k.startswith(ENCODER_PREFIX)}
    missing, extra = sorted(set(original_sd) - set(trained_sd)), sorted(set(trained_sd) - set(original_sd))
    if missing or extra:
        raise CheckpointError(f"{checkpoint}'s encoder does not match the base {base_file}: "
                              f"missing {_few(missing)}, unexpected {_few(extra)}")
    for key, value in original_sd.items():
        if tuple(trained_sd[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{checkpoint}: encoder weight {key} has shape {tuple(trained_sd[key].shape)}, "
                                  f"the base {base_file} has {tuple(value.shape)}")
    stored = state["model"].get("base_fingerprint_bytes")
    if stored is not None:
        theirs = _fp_from_tensor(stored)
        if not ku.same_base(theirs, original_fp):
            raise CheckpointError(
                f"{checkpoint} was trained from base [{ku.short(theirs)}] but {base_dir} holds base "
                f"[{ku.short(original_fp)}]: pass --roberta-path the directory of the base it was trained from"
            )

    weights = {key: trained_sd[key].detach().cpu().clone().contiguous() for key in original_sd}
    new_fp = base_fingerprint(weights, dictionary, base_args)
    # a checkpoint trained in fp16 stores fp16 weights; compare values, not storage types
    changed = sum(not torch.equal(weights[k].float(), original_sd[k].float()) for k in weights)
    history = state.get("optimizer_history") or [{}]
    num_updates = history[-1].get("num_updates")

    os.makedirs(out_dir, exist_ok=True)
    payload = {
        "args": None,
        "cfg": base_config(base_state, base_file),
        "model": {ENCODER_PREFIX + key: value for key, value in weights.items()},
        "optimizer_history": [{"criterion_name": "MaskedLmLoss", "optimizer_name": "FairseqAdam",
                               "lr_scheduler_state": {}, "num_updates": num_updates or 0}],
        "extra_state": {},
        "last_optimizer_state": None,
    }
    atomic.torch_save(payload, os.path.join(out_dir, "model.pt"))  # never a truncated model.pt that looks complete

    files = ["model.pt", "dict.txt"]
    atomic.copy(os.path.join(base_dir, "dict.txt"), os.path.join(out_dir, "dict.txt"))
    try:
        bpe = find_bpe_files(base_dir)
        tokenizer = [p for p in (bpe.gpt2_encoder_json, bpe.gpt2_vocab_bpe, bpe.sentencepiece_model) if p]
    except KAdapterError:  # a base without tokenizer files: said in the record and by the command
        tokenizer = []
    for path in tokenizer:
        atomic.copy(path, os.path.join(out_dir, os.path.basename(path)))
        files.append(os.path.basename(path))

    record = {
        "checkpoint": os.path.abspath(checkpoint),
        "train_phase": phase,
        "num_updates": num_updates,
        "original_base": os.path.abspath(base_dir),
        "original_fingerprint": original_fp,
        "fingerprint": new_fp,
        "tensors": len(weights),
        "tensors_changed": changed,
        "files": files,
        "tokenizer_copied": bool(tokenizer),
    }
    atomic.write_json(os.path.join(out_dir, EXPORT_FILE), record)
    return record
