"""``roberta_kadapter``: a pre-trained fairseq RoBERTa with plug-in knowledge adapters.

The base is loaded from ``roberta_path`` when the model is built (the
``w2v_path`` pattern of fairseq's wav2vec fine-tuning), so a missing or
mismatched base is an early, readable error instead of a silent random init.
Which parts train is decided once, at build time, by ``train_phase``: the
Trainer collects trainable parameters when it is constructed, so freezing later
would leave frozen weights in the optimizer (fairseq#4702).
"""
import contextlib
import logging
import os
from argparse import Namespace
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Dict, Optional

import torch
import torch.nn as nn
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import FairseqEncoderModel, register_model, register_model_architecture
from fairseq.models.roberta.model import RobertaEncoder
from omegaconf import OmegaConf, open_dict

from .. import checkpoint_utils as ku
from ..errors import CheckpointError, ConfigError
from ..modules.adapter import AdapterArchConfig, KnowledgeAdapter
from ..modules.fusion import AdapterFusion
from ..modules.heads import build_head
from ..modules.low_precision import dense_layout, prepare as prepare_low_precision

logger = logging.getLogger(__name__)

TRAIN_PHASES = {
    # phase: (base trains, adapters train); fusion and heads always train
    "knowledge": (False, True),
    "finetune": (True, False),
    "efficient": (False, False),
    "full": (True, True),
}


@dataclass
class RobertaKAdapterConfig(FairseqDataclass):
    roberta_path: Optional[str] = field(
        default=None, metadata={"help": "base RoBERTa: a directory with model.pt + dict.txt (roberta.large/), or a model.pt"}
    )
    roberta_checkpoint: str = field(default="model.pt", metadata={"help": "checkpoint file name inside roberta_path"})
    adapter_names: str = field(default="fac,lin", metadata={"help": "comma-separated adapter names; empty = plain RoBERTa"})
    adapter_paths: str = field(
        default="", metadata={"help": "trained adapters to load: name=path.pt,name=path.pt (their saved architecture is used)"}
    )
    adapter_plug_layers: str = field(
        default="0,11,22", metadata={"help": "base hidden states the adapter layers read (0 = embedding output)"}
    )
    adapter_input_fusion: ChoiceEnum(["add", "concat"]) = field(
        default="add", metadata={"help": "how an adapter layer combines h[p_k] with the previous adapter layer's output"}
    )
    adapter_fusion: ChoiceEnum(["concat", "add", "delta"]) = field(
        default="concat",
        metadata={"help": "how the last base layer and the adapters' outputs are fused: concat, add, or delta "
                          "(h_L + each adapter's output minus its skip path; modules/fusion.py)"},
    )
    adapter_down_dim: int = field(default=768, metadata={"help": "adapter width (down-projection size)"})
    adapter_layers: int = field(default=2, metadata={"help": "transformer layers inside each adapter layer"})
    adapter_heads: int = field(default=12, metadata={"help": "attention heads inside the adapter"})
    adapter_ffn_dim: int = field(default=3072, metadata={"help": "adapter FFN size"})
    adapter_dropout: float = field(default=0.1)
    adapter_attention_dropout: float = field(default=0.1)
    adapter_init_std: float = field(default=0.0002, metadata={"help": "std of the down/up projection init (near identity)"})
    adapter_mask_padding: bool = field(
        default=True, metadata={"help": "mask padding in the adapter's self-attention (off = released checkpoints' behaviour)"}
    )
    train_phase: ChoiceEnum(list(TRAIN_PHASES)) = field(
        default="knowledge",
        metadata={"help": "knowledge: base frozen; finetune: adapters frozen (paper); efficient: fusion+head only; full: all"},
    )
    head_dropout: float = field(default=0.1, metadata={"help": "dropout inside task heads"})
    train_lm_head: bool = field(
        default=False,
        metadata={"help": "also train the base's masked-LM head (its dense layer, layer norm and bias; the output "
                          "embedding stays frozen, being tied to the base's input embedding) when the base is frozen"},
    )


ARCH_DEFAULTS = {
    "roberta_kadapter_large": {},
    "roberta_kadapter_base": dict(  # 12 layers, H=768: the large sizes scaled by 3/4
        adapter_plug_layers="0,6,11", adapter_down_dim=576, adapter_ffn_dim=2304
    ),
    "roberta_kadapter_tiny": dict(  # tests and CPU demos
        adapter_plug_layers="0,1,2", adapter_down_dim=32, adapter_layers=1, adapter_heads=2, adapter_ffn_dim=64
    ),
}


def apply_arch_defaults(cfg):
    """fairseq-hydra-train merges the dataclass defaults (the large sizes) into
    ``model: {_name: roberta_kadapter_tiny}`` before the arch function runs, so a
    field still at its dataclass default takes the arch's value here. (An explicit
    override equal to the large default is indistinguishable and yields the arch's.)"""
    name = getattr(cfg, "_name", None) if not isinstance(cfg, dict) else cfg.get("_name")
    if name not in ARCH_DEFAULTS:
        return
    defaults = {f.name: f.default for f in fields(RobertaKAdapterConfig)}
    if isinstance(cfg, dict):
        # a dict written in Python names only what it changes: the rest is the dataclass default
        for key, value in defaults.items():
            if not key.startswith("_") and value is not MISSING:
                cfg.setdefault(key, value)
    with open_dict(cfg) if OmegaConf.is_config(cfg) else contextlib.nullcontext():
        for key, value in ARCH_DEFAULTS[name].items():
            if _value(cfg, key) == defaults[key]:
                _set_value(cfg, key, value)


def _value(cfg, name):
    return cfg[name] if isinstance(cfg, dict) else getattr(cfg, name)


def _optional_value(cfg, name, default):
    try:
        value = _value(cfg, name)
    except (KeyError, AttributeError):
        return default
    return default if value is None else value


def _set_value(cfg, name, value):
    # plain dicts (models built from Python without OmegaConf) have no attributes to set
    if isinstance(cfg, dict):
        cfg[name] = value
    else:
        setattr(cfg, name, value)


def parse_adapter_paths(spec: str) -> Dict[str, str]:
    out = {}
    for item in filter(None, (s.strip() for s in (spec or "").split(","))):
        if "=" not in item:
            raise ConfigError(f"model.adapter_paths: expected name=path, got {item!r}")
        name, path = item.split("=", 1)
        out[name.strip()] = path.strip()
    return out


def resolve_base_path(roberta_path, checkpoint="model.pt"):
    if not roberta_path:
        raise ConfigError("model.roberta_path is required: the base RoBERTa directory (model.pt + dict.txt) or its model.pt")
    path = os.path.join(roberta_path, checkpoint) if os.path.isdir(roberta_path) else roberta_path
    if not os.path.isfile(path):
        raise ConfigError(f"model.roberta_path: base checkpoint not found: {path}")
    return path


def load_base_checkpoint(path):
    """The base's architecture args and encoder state dict from a fairseq RoBERTa checkpoint."""
    state = ku.load_file(path, "base RoBERTa checkpoint")
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a fairseq model checkpoint (no 'model' entry)")
    if state.get("cfg") is not None:
        model_cfg = state["cfg"]["model"]
        if OmegaConf.is_config(model_cfg):
            args = OmegaConf.to_container(model_cfg)
        elif isinstance(model_cfg, Namespace):  # fairseq-train keeps legacy archs' config as a Namespace
            args = vars(model_cfg).copy()
        else:
            args = dict(model_cfg)
    elif state.get("args") is not None:
        args = vars(state["args"]).copy()
    else:
        raise CheckpointError(f"{path} holds no model configuration ('cfg' or 'args')")
    encoder_sd = {}
    for key, value in state["model"].items():
        for prefix in ("encoder.", "decoder."):  # very old RoBERTa checkpoints call the encoder "decoder"
            if key.startswith(prefix):
                encoder_sd[key[len(prefix):]] = value
                break
    if not encoder_sd:
        raise CheckpointError(f"{path} has no RoBERTa encoder weights (no 'encoder.*' keys)")
    return args, encoder_sd


@register_model("roberta_kadapter", dataclass=RobertaKAdapterConfig)
class RobertaKAdapterModel(FairseqEncoderModel):
    def __init__(self, cfg, encoder: RobertaEncoder, base_fingerprint: Optional[dict] = None, adapter_states: Optional[dict] = None):
        """``adapter_states``: ``{name: contents of its adapter file}`` already read by the caller
        (the hub reads each file once and also takes heads from it); other adapters are read here."""
        super().__init__(encoder)
        self.cfg = cfg
        self.hidden_dim = encoder.args.encoder_embed_dim
        self.num_base_layers = encoder.args.encoder_layers
        self.padding_idx = encoder.dictionary.pad()
        self.base_fingerprint = base_fingerprint
        if base_fingerprint is not None:
            # travels inside every fairseq checkpoint, so resuming onto another base is caught
            self.register_buffer("base_fingerprint_bytes", _fp_to_tensor(base_fingerprint))
        self.adapters = nn.ModuleDict()
        names = [n.strip() for n in (_value(cfg, "adapter_names") or "").split(",") if n.strip()]
        if len(set(names)) != len(names):
            raise ConfigError(f"model.adapter_names lists a name twice: {names}")
        paths = parse_adapter_paths(_value(cfg, "adapter_paths"))
        unknown = set(paths) - set(names)
        if unknown:
            raise ConfigError(f"model.adapter_paths names adapters not in model.adapter_names ({names}): {sorted(unknown)}")
        loaded = {}
        for name in names:
            if name in paths:
                arch, sd, file_state = self._read_adapter(name, paths[name], (adapter_states or {}).get(name))
                loaded[name] = (sd, file_state)
            else:
                arch = self.default_adapter_arch(cfg, self.hidden_dim)
            arch.check_base(self.num_base_layers, self.hidden_dim)
            self.adapters[name] = KnowledgeAdapter(arch)
        self.fusion = AdapterFusion(names, self.hidden_dim, _value(cfg, "adapter_fusion"))
        self.heads = nn.ModuleDict()
        self.head_specs = {}
        for name, (sd, file_state) in loaded.items():
            self._load_adapter_weights(name, sd, file_state, paths[name])
        self.base_trains, self.adapters_train = TRAIN_PHASES[_value(cfg, "train_phase")]
        self.encoder.requires_grad_(self.base_trains)
        self.adapters.requires_grad_(self.adapters_train)
        # configs saved before the switch existed lack it: the head was frozen with the base then
        self.lm_head_trains = self.base_trains or bool(_optional_value(cfg, "train_lm_head", False))
        if self.lm_head_trains and not self.base_trains:
            self.encoder.lm_head.requires_grad_(True)
            # the output embedding is the base's input embedding (tied): it stays frozen with the base
            self.encoder.lm_head.weight.requires_grad_(False)
        # bf16/fp16 at the speed of the matrix units; nothing changes in fp32 (modules/low_precision.py)
        prepare_low_precision(self, self.encoder.sentence_encoder.layers)
        self.train(True)

    # ------------------------------------------------------------------------------------------
    # building

    @staticmethod
    def default_adapter_arch(cfg, hidden_dim) -> AdapterArchConfig:
        return AdapterArchConfig(
            hidden_dim=hidden_dim,
            plug_layers=[int(p) for p in str(_value(cfg, "adapter_plug_layers")).split(",") if str(p).strip()],
            down_dim=_value(cfg, "adapter_down_dim"),
            num_layers=_value(cfg, "adapter_layers"),
            heads=_value(cfg, "adapter_heads"),
            ffn_dim=_value(cfg, "adapter_ffn_dim"),
            dropout=_value(cfg, "adapter_dropout"),
            attention_dropout=_value(cfg, "adapter_attention_dropout"),
            init_std=_value(cfg, "adapter_init_std"),
            mask_padding=bool(_value(cfg, "adapter_mask_padding")),
            input_fusion=str(_value(cfg, "adapter_input_fusion")),
        )

    @classmethod
    def build_model(cls, cfg, task):
        apply_arch_defaults(cfg)
        return cls.from_base(cfg, task.source_dictionary)

    @classmethod
    def from_base(cls, cfg, dictionary, adapter_states=None):
        """Build around the base named by ``cfg.roberta_path``, whose vocabulary must be ``dictionary``."""
        path = resolve_base_path(_value(cfg, "roberta_path"), _value(cfg, "roberta_checkpoint"))
        base_args, encoder_sd = load_base_checkpoint(path)
        rows = encoder_sd["sentence_encoder.embed_tokens.weight"].shape[0]
        if rows != len(dictionary):
            raise CheckpointError(
                f"base {path} has a vocabulary of {rows} embeddings but the task's dictionary has {len(dictionary)} "
                "entries (dict.txt + specials + <mask>): binarize the data with the base's own dict.txt"
            )
        base_args.setdefault("max_positions", encoder_sd["sentence_encoder.embed_positions.weight"].shape[0] - dictionary.pad() - 1)
        encoder = RobertaEncoder(Namespace(**base_args), dictionary)
        try:
            encoder.load_state_dict(encoder_sd, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"base {path} does not match the RoBERTa architecture its own config describes: {e}") from None
        fp = {
            "weights": ku.fingerprint_weights(encoder_sd),
            "dictionary": ku.fingerprint_dictionary(dictionary),
            "summary": f"{encoder.args.encoder_layers} layers, H={encoder.args.encoder_embed_dim}, vocab {len(dictionary)}",
        }
        return cls(cfg, encoder, fp, adapter_states)

    # ------------------------------------------------------------------------------------------
    # adapter files

    def _read_adapter_file(self, path, state=None):
        """An adapter checkpoint (read now unless ``state`` holds it), refused when it was trained on another base."""
        if state is None:
            state = ku.load_adapter_file(path)
        if not ku.same_base(state.get("base_fingerprint"), self.base_fingerprint):
            raise CheckpointError(
                f"adapter checkpoint {path} was trained on a different base model: it expects base "
                f"[{ku.short(state['base_fingerprint'])}] but this model's base is [{ku.short(self.base_fingerprint)}]"
            )
        return state

    def _read_adapter(self, name, path, state=None):
        state = self._read_adapter_file(path, state)
        adapters = state["adapters"]
        if name in adapters:
            arch, sd = adapters[name]
        elif len(adapters) == 1:
            arch, sd = next(iter(adapters.values()))
        else:
            raise CheckpointError(f"{path} holds adapters {sorted(adapters)}, none named {name!r}")
        return arch, sd, state

    def _load_adapter_weights(self, name, sd, file_state, path):
        _strict_load(self.adapters[name], sd, f"adapter {name!r} from {path}")
        fusion = file_state.get("fusion")
        if fusion and fusion["mode"] == self.fusion.mode == "concat" and name in self.fusion.proj:
            prefix = f"proj.{name}."
            proj_sd = {k[len(prefix):]: v for k, v in fusion["state_dict"].items() if k.startswith(prefix)}
            if proj_sd:
                _strict_load(self.fusion.proj[name], proj_sd, f"fusion projection of {name!r} from {path}")

    def save_adapters(self, path, names=None, include_fusion=False, include_heads=False):
        """Write an adapter-only checkpoint (see ``checkpoint_utils.save_adapter_file``)."""
        names = list(self.adapters) if names is None else list(names)
        missing = [n for n in names if n not in self.adapters]
        if missing:
            raise ConfigError(f"no adapters named {missing}; this model has {list(self.adapters)}")
        fusion = heads = None
        if include_fusion:
            fusion = {
                "mode": self.fusion.mode,
                "names": self.fusion.names,
                "state_dict": {k: v.detach().cpu() for k, v in self.fusion.state_dict().items()},
            }
        if include_heads:
            heads = {
                hname: dict(self.head_specs[hname], state_dict={k: v.detach().cpu() for k, v in head.state_dict().items()})
                for hname, head in self.heads.items()
            }
        ku.save_adapter_file(
            path,
            {n: (self.adapters[n].cfg, self.adapters[n].state_dict()) for n in names},
            fusion=fusion,
            heads=heads,
            base_fingerprint=self.base_fingerprint,
        )

    def load_adapters(self, path, names=None, load_fusion=True, load_heads=True, state=None):
        """Load weights of adapters (and, when present, fusion and heads) from an adapter checkpoint
        (``state``: its contents when the caller has read it already)."""
        state = self._read_adapter_file(path, state)
        for name, (arch, sd) in state["adapters"].items():
            if names is not None and name not in names:
                continue
            if name not in self.adapters:
                raise CheckpointError(f"{path} holds adapter {name!r}, which this model does not have ({list(self.adapters)})")
            if arch != self.adapters[name].cfg:
                raise CheckpointError(f"adapter {name!r} in {path} has architecture {arch}, this model's is {self.adapters[name].cfg}")
            _strict_load(self.adapters[name], sd, f"adapter {name!r} from {path}")
        fusion = state.get("fusion")
        if load_fusion and fusion:
            if fusion["mode"] != self.fusion.mode or fusion["names"] != self.fusion.names:
                raise CheckpointError(
                    f"{path} holds a {fusion['mode']} fusion of {fusion['names']}; this model fuses {self.fusion.names} by {self.fusion.mode}"
                )
            _strict_load(self.fusion, fusion["state_dict"], f"fusion from {path}")
        for hname, spec in (state.get("heads") or {}).items() if load_heads else ():
            if hname not in self.heads:
                self.register_kadapter_head(hname, spec["type"], spec["num_classes"], **spec.get("kwargs", {}))
            _strict_load(self.heads[hname], spec["state_dict"], f"head {hname!r} from {path}")

    # ------------------------------------------------------------------------------------------
    # heads

    def register_kadapter_head(self, name, head_type, num_classes, **kwargs):
        """Attach a task head (``modules/heads.py``), like RoBERTa's ``register_classification_head``."""
        spec = {"type": head_type, "num_classes": int(num_classes), "kwargs": dict(kwargs)}
        if name in self.heads:
            if self.head_specs[name] == spec:
                return
            logger.warning(f"re-registering head {name} ({self.head_specs[name]} -> {spec})")
        kwargs.setdefault("dropout", _value(self.cfg, "head_dropout"))
        head = build_head(head_type, self.hidden_dim, num_classes, **kwargs)
        self.heads[name] = head.to(next(self.fusion.parameters(), self.encoder.sentence_encoder.embed_tokens.weight))
        self.head_specs[name] = spec

    @property
    def classification_heads(self):
        """fairseq's RoBERTa criterions look heads up under this name."""
        return self.heads

    def register_classification_head(self, name, num_classes=None, inner_dim=None, **kwargs):
        """fairseq's RoBERTa name for a ``<s>`` classifier, so built-in tasks such as
        ``sentence_prediction`` work on top of the fused feature unchanged."""
        self.register_kadapter_head(name, "sentence", num_classes)

    # ------------------------------------------------------------------------------------------
    # running

    def train(self, mode=True):
        super().train(mode)
        # frozen parts stay in eval mode: their dropout would only add noise to fixed features
        if not self.base_trains:
            self.encoder.eval()
        if not self.adapters_train:
            self.adapters.eval()
        return self

    def half(self):
        if not torch.cuda.is_available():
            raise ConfigError(
                "common.fp16 / memory_efficient_fp16 need a CUDA GPU and none is available; on CPU use common.bf16=true"
            )
        return super().half()

    def extract_features(self, src_tokens, cached_features=None, **unused):
        """One pass of the base serves every adapter. Returns (fused B×T×H, extra).

        ``cached_features`` (see ``compute_cacheable_features``) replaces what the
        frozen part would compute: the base forward in the knowledge phase, the base
        and the adapters in the efficient phase. Anything that is not a mapping
        (``None``, or a cache's marker for rows still to fill) means "compute"."""
        padding_mask = src_tokens.eq(self.padding_idx)
        if isinstance(cached_features, Mapping):
            last, adapter_out, deltas, inner = self._from_cached_features(src_tokens, padding_mask, cached_features)
        else:
            frozen = contextlib.nullcontext() if self.base_trains else torch.no_grad()
            with frozen:
                last, base_extra = self.encoder.extract_features(src_tokens, return_all_hiddens=len(self.adapters) > 0)
            inner = base_extra["inner_states"]
            if inner:  # state 0 is fairseq's transposed view of the embeddings (modules/low_precision.py)
                inner = [dense_layout(inner[0])] + inner[1:]
            adapter_out, deltas = self.run_adapters(inner, padding_mask)
        fused = self.fusion(last, adapter_out, deltas)
        return fused, {
            "base": last, "adapters": adapter_out, "adapter_deltas": deltas, "padding_mask": padding_mask, "inner_states": inner,
        }

    def run_adapters(self, inner, padding_mask):
        """Every adapter over the base's inner states (T×B×H each): ``({name: a_K}, {name: a_K − s_K} or None)``,
        each B×T×H; the deltas (``KnowledgeAdapter.delta``) only where the fusion reads them, from the same pass."""
        if not self.fusion.reads_delta:
            return {name: adapter(inner, padding_mask).transpose(0, 1) for name, adapter in self.adapters.items()}, None
        outs, deltas = {}, {}
        for name, adapter in self.adapters.items():
            a, d = adapter(inner, padding_mask, with_delta=True)
            outs[name], deltas[name] = a.transpose(0, 1), d.transpose(0, 1)
        return outs, deltas

    def cacheable_plug_layers(self):
        """The base hidden states any adapter reads (0 = embedding output), sorted."""
        return sorted({p for adapter in self.adapters.values() for p in adapter.cfg.plug_layers})

    def compute_cacheable_features(self, src_tokens):
        """What the frozen part computes for this batch, each B×T×H, padded like ``src_tokens``.

        knowledge phase: ``{"states": {plug: ...}, "last": ...}`` (the base at every
        adapter's plug-in points, and its last layer); efficient phase:
        ``{"adapters": {name: ...}, "last": ...}``. Passing the result back as
        ``cached_features`` gives exactly the computed path's outputs."""
        if self.base_trains:
            raise ConfigError(
                f"model.train_phase={_value(self.cfg, 'train_phase')} trains the base, so its features cannot be cached "
                "(the feature cache needs train_phase=knowledge or efficient)"
            )
        with torch.no_grad():
            last, base_extra = self.encoder.extract_features(src_tokens, return_all_hiddens=len(self.adapters) > 0)
            if self.adapters_train:
                inner = base_extra["inner_states"]
                return {"states": {p: inner[p].transpose(0, 1) for p in self.cacheable_plug_layers()}, "last": last}
            if self.fusion.reads_delta:
                raise ConfigError(self._delta_cache_message())
            padding_mask = src_tokens.eq(self.padding_idx)
            inner = base_extra["inner_states"]
            inner = [dense_layout(inner[0])] + inner[1:]  # as extract_features gives them to the adapters
            return {
                "adapters": {name: adapter(inner, padding_mask).transpose(0, 1) for name, adapter in self.adapters.items()},
                "last": last,
            }

    def _from_cached_features(self, src_tokens, padding_mask, cached):
        if self.base_trains:
            raise ConfigError(
                f"cached features were given but model.train_phase={_value(self.cfg, 'train_phase')} trains the base"
            )
        dtype = self.encoder.sentence_encoder.embed_tokens.weight.dtype
        shape = (*src_tokens.shape, self.hidden_dim)

        def take(t, what):
            if tuple(t.shape) != shape:
                raise ConfigError(f"cached features ({what}) have shape {tuple(t.shape)}, the batch needs {shape}")
            return t.to(device=src_tokens.device, dtype=dtype)

        last = take(cached["last"], "last layer")
        if "adapters" in cached:
            if self.fusion.reads_delta:
                raise ConfigError(self._delta_cache_message())
            missing = [n for n in self.adapters if n not in cached["adapters"]]
            if missing:
                raise ConfigError(f"cached features lack the outputs of adapters {missing}")
            return last, {name: take(cached["adapters"][name], f"adapter {name}") for name in self.adapters}, None, None
        states = cached.get("states", {})
        missing = [p for p in self.cacheable_plug_layers() if p not in states]
        if missing:
            raise ConfigError(f"cached features lack the base states at plug-in points {missing}")
        # the adapters read T×B×H, as the base's inner_states; contiguous, so the adapters see the layout they
        # would see uncached (bit-equal results in fp32)
        inner = [None] * (self.num_base_layers + 1)
        for p, t in states.items():
            inner[int(p)] = take(t, f"state {p}").transpose(0, 1).contiguous()
        if inner[0] is None:  # an adapter takes only the shape of slot 0 (its zero start) when 0 is not plugged
            inner[0] = last.transpose(0, 1)
        adapter_out, deltas = self.run_adapters(inner, padding_mask)
        return last, adapter_out, deltas, inner

    def _delta_cache_message(self):
        # the efficient phase caches each frozen adapter's output a_K, and the delta fusion needs a_K − s_K,
        # whose skip path s_K reads base states that cache does not hold
        return ("task.feature_cache with frozen adapters (train_phase=efficient) caches the adapters' outputs, "
                "which the delta fusion cannot use: turn the cache off (task.feature_cache='') or fuse by add/concat")

    def forward(self, src_tokens, features_only=False, classification_head_name=None, positions=None, masked_tokens=None,
                cached_features=None, **unused):
        features, extra = self.extract_features(src_tokens, cached_features=cached_features)
        if classification_head_name is not None:
            if classification_head_name not in self.heads:
                raise ConfigError(f"no head named {classification_head_name!r}; registered: {list(self.heads)}")
            head = self.heads[classification_head_name]
            return head(features, positions=positions, padding_mask=extra["padding_mask"]), extra
        if features_only:
            return features, extra
        # masked-LM scores from the base's LM head over the fused feature (LAMA-style probing)
        return self.encoder.output_layer(features, masked_tokens=masked_tokens), extra

    def max_positions(self):
        return self.encoder.max_positions()

    # ------------------------------------------------------------------------------------------
    # fairseq checkpoints

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        stored = state_dict.get("base_fingerprint_bytes")
        if stored is not None and self.base_fingerprint is not None:
            theirs = _fp_from_tensor(stored)
            if not ku.same_base(theirs, self.base_fingerprint):
                raise CheckpointError(
                    f"this checkpoint was trained on a different base model: it expects base [{ku.short(theirs)}] "
                    f"but model.roberta_path gives base [{ku.short(self.base_fingerprint)}]"
                )
        return super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)


def _fp_to_tensor(fp):
    return torch.tensor(list(bytes.fromhex(fp["weights"]) + bytes.fromhex(fp["dictionary"])), dtype=torch.uint8)


def _fp_from_tensor(t):
    raw = bytes(t.tolist())
    return {"weights": raw[:32].hex(), "dictionary": raw[32:].hex(), "summary": "from checkpoint"}


def _strict_load(module, state_dict, what):
    """Never a silent partial load (the released loader's bug): list what is missing or extra."""
    try:
        result = module.load_state_dict(state_dict, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise CheckpointError(f"cannot load {what}: {e}") from None
    problems = []
    if result.missing_keys:
        problems.append(f"missing {sorted(result.missing_keys)}")
    if result.unexpected_keys:
        problems.append(f"unexpected {sorted(result.unexpected_keys)}")
    if problems:
        raise CheckpointError(f"cannot load {what}: " + "; ".join(problems))


def _arch(name):
    defaults = ARCH_DEFAULTS[name]

    def fill(cfg):
        for f in fields(RobertaKAdapterConfig):
            if f.name.startswith("_"):
                continue
            default = defaults.get(f.name, f.default)
            if getattr(cfg, f.name, None) is None and default is not None:
                setattr(cfg, f.name, default)

    register_model_architecture("roberta_kadapter", name)(fill)


for _name in ARCH_DEFAULTS:
    _arch(_name)
