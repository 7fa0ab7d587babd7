"""A knowledge adapter from the authors' release -> this toolkit's adapter checkpoint.

The release saves each adapter as a ``pytorch_model.bin`` of its PyTorch
module: ``adapter.{i}.down_project``, ``adapter.{i}.encoder.layer.{j}.*``
(BERT layers) and ``adapter.{i}.up_project`` per plug-in point i, next to the
pre-training task's head. Only the adapter converts; the head belongs to the
pre-training task and is reported as skipped.

Released adapters were trained with add input fusion and no padding mask in
the adapter's attention, so the converted architecture says exactly that.
"""
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

from .. import checkpoint_utils as ku
from ..errors import CheckpointError, ConfigError
from .hf_roberta import LAYER_MODULES, load_torch_file

PREFIX = "adapter."
RELEASED_HEADS = 12
RELEASED_LAYER_NORM_EPS = 1e-5
_ADAPTER_KEY = re.compile(r"^adapter\.(\d+)\.(.+)$")
_INNER_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")


@dataclass
class AdapterConversion:
    out: str
    name: str
    arch: dict
    skipped: List[str] = field(default_factory=list)


def read_released_state(path) -> Dict[str, torch.Tensor]:
    state = load_torch_file(path, "released adapter checkpoint")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors (the release's pytorch_model.bin layout)")
    # checkpoints saved from inside DataParallel carry a "module." prefix
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def expected_released_keys(hidden, down, ffn, num_layers, num_adapter_layers) -> Dict[str, tuple]:
    """Every tensor of the released layout with its shape."""
    shapes = {}
    for i in range(num_adapter_layers):
        a = f"{PREFIX}{i}."
        shapes[a + "down_project.weight"] = (down, hidden)
        shapes[a + "down_project.bias"] = (down,)
        shapes[a + "up_project.weight"] = (hidden, down)
        shapes[a + "up_project.bias"] = (hidden,)
        for j in range(num_layers):
            for mod in LAYER_MODULES:
                w = (down,) if "LayerNorm" in mod else {"intermediate.dense": (ffn, down), "output.dense": (down, ffn)}.get(mod, (down, down))
                shapes[f"{a}encoder.layer.{j}.{mod}.weight"] = w
                shapes[f"{a}encoder.layer.{j}.{mod}.bias"] = w[:1]
    return shapes


def infer_arch(state, plug_layers, heads, layer_norm_eps, where):
    """Sizes from the tensor shapes; what shapes cannot tell comes from the options."""
    from ..modules.adapter import AdapterArchConfig

    indices = sorted({int(m.group(1)) for m in map(_ADAPTER_KEY.match, state) if m})
    if not indices:
        heads_only = ", ".join(sorted(state)[:5])
        raise CheckpointError(f"{where}: no adapter tensors (no 'adapter.<i>.' keys; found {heads_only} ...)")
    if indices != list(range(len(indices))):
        raise CheckpointError(f"{where}: adapter layers {indices} are not numbered 0..{len(indices) - 1}")
    if len(indices) != len(plug_layers):
        raise ConfigError(
            f"{where} has {len(indices)} adapter layers but --layers gives {len(plug_layers)} plug-in points {plug_layers}"
        )
    first = f"{PREFIX}0."
    for key in (first + "down_project.weight", first + "encoder.layer.0.intermediate.dense.weight"):
        if key not in state:
            raise CheckpointError(f"{where}: tensor {key!r} is missing; cannot read the adapter's sizes")
    down, hidden = state[first + "down_project.weight"].shape
    ffn = state[first + "encoder.layer.0.intermediate.dense.weight"].shape[0]
    num_layers = 1 + max(
        int(m.group(1)) for m in (_INNER_LAYER.match(k[len(first):]) for k in state if k.startswith(first)) if m
    )
    if down % heads:
        raise ConfigError(f"{where}: adapter width {down} is not divisible by --adapter-heads {heads}")
    return AdapterArchConfig(
        hidden_dim=int(hidden),
        plug_layers=list(plug_layers),
        down_dim=int(down),
        num_layers=num_layers,
        heads=heads,
        ffn_dim=int(ffn),
        dropout=0.1,
        attention_dropout=0.1,
        mask_padding=False,
        input_fusion="add",
        layer_norm_eps=layer_norm_eps,
    )


def to_toolkit_state(state, arch, where) -> Dict[str, torch.Tensor]:
    """Check the released tensors (all present, none unexpected, right shapes) and rename them."""
    expected = expected_released_keys(arch.hidden_dim, arch.down_dim, arch.ffn_dim, arch.num_layers, len(arch.plug_layers))
    adapter_keys = {k for k in state if k.startswith(PREFIX)}
    missing = sorted(set(expected) - adapter_keys)
    unexpected = sorted(adapter_keys - set(expected))
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): {missing}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensor(s): {unexpected}")
    wrong = [f"{k} {tuple(state[k].shape)} (expected {s})" for k, s in expected.items() if k in state and tuple(state[k].shape) != s]
    if wrong:
        problems.append(f"shape mismatch: {wrong}")
    if problems:
        raise CheckpointError(f"{where}: not a complete released adapter (no partial loads): " + "; ".join(problems))
    out = {}
    for i in range(len(arch.plug_layers)):
        a, t = f"{PREFIX}{i}.", f"layers.{i}."
        for kind in ("weight", "bias"):
            out[f"{t}down_proj.{kind}"] = state[f"{a}down_project.{kind}"]
            out[f"{t}up_proj.{kind}"] = state[f"{a}up_project.{kind}"]
            for j in range(arch.num_layers):
                for hf_mod, fs_mod in LAYER_MODULES.items():
                    out[f"{t}encoder.{j}.{fs_mod}.{kind}"] = state[f"{a}encoder.layer.{j}.{hf_mod}.{kind}"]
    return {k: v.detach().float().contiguous() for k, v in out.items()}


def check_against_module(sd, arch, where):
    """The renamed tensors must be exactly the toolkit module's parameters (built on the meta device)."""
    from ..modules.adapter import KnowledgeAdapter

    with torch.device("meta"):
        module_sd = KnowledgeAdapter(arch).state_dict()
    missing, extra = sorted(set(module_sd) - set(sd)), sorted(set(sd) - set(module_sd))
    wrong = [k for k in module_sd if k in sd and module_sd[k].shape != sd[k].shape]
    if missing or extra or wrong:
        raise CheckpointError(f"{where}: converted adapter does not fit KnowledgeAdapter: missing {missing}, extra {extra}, shapes {wrong}")


def check_base(arch, base):
    """Fail before writing when the adapter cannot plug into ``base`` (a RoBERTa dir or model.pt)."""
    from ..models.roberta_kadapter import load_base_checkpoint, resolve_base_path

    args, encoder_sd = load_base_checkpoint(resolve_base_path(base))
    hidden = encoder_sd["sentence_encoder.embed_tokens.weight"].shape[1]
    layers = args.get("encoder_layers") or 1 + max(
        int(k.split(".")[2]) for k in encoder_sd if k.startswith("sentence_encoder.layers.")
    )
    arch.check_base(int(layers), int(hidden))


def default_name(path) -> str:
    low = os.path.basename(os.path.dirname(os.path.abspath(path))).lower() + " " + os.path.basename(path).lower()
    for name in ("fac", "lin"):
        if name in low:
            return name
    return "adapter"


def convert_released_adapter(
    ckpt,
    out,
    plug_layers,
    heads: int = RELEASED_HEADS,
    layer_norm_eps: float = RELEASED_LAYER_NORM_EPS,
    name: Optional[str] = None,
    base: Optional[str] = None,
    overwrite: bool = False,
) -> AdapterConversion:
    ckpt, out = os.fspath(ckpt), os.fspath(out)
    plug_layers = [int(p) for p in plug_layers]
    if os.path.exists(out) and not overwrite:
        raise ConfigError(f"{out} exists; pass --force to overwrite it")
    state = read_released_state(ckpt)
    arch = infer_arch(state, plug_layers, heads, layer_norm_eps, ckpt)
    sd = to_toolkit_state(state, arch, ckpt)
    check_against_module(sd, arch, ckpt)
    if base is not None:
        check_base(arch, base)
    name = name or default_name(ckpt)
    ku.save_adapter_file(out, {name: (arch, sd)})
    skipped = sorted(k for k in state if not k.startswith(PREFIX))
    return AdapterConversion(out=out, name=name, arch=arch.to_dict(), skipped=skipped)
