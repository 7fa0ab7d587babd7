"""fairseq's own ``roberta.base/`` and ``roberta.large/`` directories as the base.

Those archives hold ``model.pt`` (an ``argparse.Namespace`` config; very old
ones call the encoder ``decoder``) and ``dict.txt``, but not the GPT-2 BPE
files, which fairseq fetches separately. ``check_roberta_dir`` says whether a
directory works as ``model.roberta_path`` exactly as the toolkit will load it;
``repack_roberta_dir`` writes a self-contained copy (BPE files inside,
``model.pt`` with a plain-dict ``cfg`` that loads under torch's ``weights_only``
default even without this package's allow-list).
"""
import argparse
import os
import shutil
from dataclasses import dataclass, field
from typing import List

import torch

from .. import checkpoint_utils as ku
from ..bpe import find_bpe_files
from ..errors import ConfigError, KAdapterError


@dataclass
class BaseCheck:
    path: str
    summary: str
    bpe: object = None
    notes: List[str] = field(default_factory=list)


def _find_bpe(path, **bpe_files):
    try:
        return find_bpe_files(path, **{k: v for k, v in bpe_files.items() if v})
    except KAdapterError as e:
        raise ConfigError(
            f"{e}. fairseq's roberta.base/roberta.large archives do not include the GPT-2 BPE files: put encoder.json "
            "and vocab.bpe (fairseq's gpt2_bpe files) next to model.pt, or pass --gpt2-encoder-json/--gpt2-vocab-bpe"
        ) from None


def check_roberta_dir(path, checkpoint="model.pt", **bpe_files) -> BaseCheck:
    """Load ``path`` the way ``roberta_kadapter`` does (plain RoBERTa, no adapters); errors name what is missing."""
    from omegaconf import OmegaConf

    from ..hub import load_base_dictionary
    from ..models.roberta_kadapter import RobertaKAdapterConfig, RobertaKAdapterModel, resolve_base_path

    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ConfigError(f"base directory not found: {path}")
    resolve_base_path(path, checkpoint)
    dictionary = load_base_dictionary(path)
    files = _find_bpe(path, **bpe_files)
    cfg = OmegaConf.structured(RobertaKAdapterConfig(roberta_path=path, roberta_checkpoint=checkpoint, adapter_names="", train_phase="efficient"))
    model = RobertaKAdapterModel.from_base(cfg, dictionary)
    args = model.encoder.args
    state = ku.load_file(os.path.join(path, checkpoint), "base RoBERTa checkpoint")
    notes = []
    if state.get("cfg") is None:
        notes.append("model.pt stores its config as an argparse.Namespace (fairseq's release format); "
                     "`kadapter-convert fairseq-roberta` writes a copy that loads without the allow-list")
    if any(k.startswith("decoder.") for k in state.get("model", {})):
        notes.append("model.pt uses the old 'decoder.*' key names (renamed to 'encoder.*' on load)")
    summary = (f"{args.encoder_layers} layers, H={args.encoder_embed_dim}, {args.encoder_attention_heads} heads, "
               f"vocab {len(dictionary)}, max_positions {model.max_positions()}, BPE {files.kind}")
    return BaseCheck(path=path, summary=summary, bpe=files, notes=notes)


def _plain(value):
    """Config values as weights_only-loadable containers."""
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if not callable(v)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, torch.Tensor):  # numpy scalars
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def repack_roberta_dir(src, dest, overwrite=False, checkpoint="model.pt", **bpe_files) -> BaseCheck:
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import OmegaConf

    from .. import atomic
    from .hf_roberta import check_dest

    first = check_roberta_dir(src, checkpoint, **bpe_files)
    src, dest = os.fspath(src), os.fspath(dest)
    if os.path.abspath(src) == os.path.abspath(dest):
        raise ConfigError("DEST must differ from SRC")
    state = ku.load_file(os.path.join(src, checkpoint), "base RoBERTa checkpoint")
    # the conversion fairseq's own loader applies to Namespace configs
    cfg = state.get("cfg") if state.get("cfg") is not None else convert_namespace_to_omegaconf(state["args"])
    cfg = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True) if OmegaConf.is_config(cfg) else cfg
    cfg = _plain(cfg)
    model = {}
    for k, v in state["model"].items():
        model[("encoder." + k[len("decoder."):]) if k.startswith("decoder.") else k] = v
    files = first.bpe
    if files.kind == "gpt2":
        copies = {files.gpt2_encoder_json: "encoder.json", files.gpt2_vocab_bpe: "vocab.bpe"}
        cfg["bpe"] = {"_name": "gpt2", "gpt2_encoder_json": "encoder.json", "gpt2_vocab_bpe": "vocab.bpe"}
    else:
        copies = {files.sentencepiece_model: "sentencepiece.bpe.model"}
        cfg["bpe"] = {"_name": "sentencepiece", "sentencepiece_model": "sentencepiece.bpe.model"}
    if isinstance(cfg.get("task"), dict):
        cfg["task"]["data"] = "."
    check_dest(dest, overwrite)
    os.makedirs(dest, exist_ok=True)
    shutil.copyfile(os.path.join(src, "dict.txt"), os.path.join(dest, "dict.txt"))
    for from_path, name in copies.items():
        if os.path.abspath(from_path) != os.path.abspath(os.path.join(dest, name)):
            shutil.copyfile(from_path, os.path.join(dest, name))
    atomic.torch_save(
        {
            "args": None,
            "cfg": cfg,
            "model": model,
            "optimizer_history": [
                {"criterion_name": "MaskedLmLoss", "optimizer_name": "none", "lr_scheduler_state": {}, "num_updates": 0}
            ],
            "extra_state": {"repacked_from": os.path.abspath(src)},
            "last_optimizer_state": None,
        },
        os.path.join(dest, "model.pt"),
    )
    result = check_roberta_dir(dest)
    result.notes = [n for n in first.notes if "decoder" in n]
    return result
