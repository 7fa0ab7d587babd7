"""Knowledge adapters (docs/reference/kadapter.md §1.1-1.2).

An adapter is a chain of adapter layers reading the frozen base's hidden states
at fixed plug-in points. Each layer is down-projection → a few post-LN
transformer layers (fairseq's own ``TransformerEncoderLayerBase``) →
up-projection, with a skip connection across the whole layer.
"""
from dataclasses import asdict, dataclass, field, fields
from typing import List, Optional

import torch
import torch.nn as nn
from fairseq.models.transformer import TransformerConfig
from fairseq.modules.transformer_layer import TransformerEncoderLayerBase

from ..errors import ConfigError

INPUT_FUSIONS = ("add", "concat")


@dataclass
class AdapterArchConfig:
    """Everything needed to rebuild one adapter; stored in adapter checkpoints."""

    hidden_dim: int = 1024
    plug_layers: List[int] = field(default_factory=lambda: [0, 11, 22])
    down_dim: int = 768
    num_layers: int = 2
    heads: int = 12
    ffn_dim: int = 3072
    dropout: float = 0.1
    attention_dropout: float = 0.1
    init_std: float = 0.0002
    mask_padding: bool = True
    input_fusion: str = "add"
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        self.plug_layers = [int(p) for p in self.plug_layers]
        self.input_fusion = str(self.input_fusion)
        if self.input_fusion not in INPUT_FUSIONS:
            raise ConfigError(f"adapter input fusion must be one of {INPUT_FUSIONS}, got {self.input_fusion!r}")
        if not self.plug_layers:
            raise ConfigError("an adapter needs at least one plug-in layer")
        if self.down_dim % self.heads:
            raise ConfigError(f"adapter width {self.down_dim} is not divisible by its {self.heads} heads")

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown adapter config keys: {sorted(unknown)}")
        return cls(**d)

    def check_base(self, num_layers: int, hidden_dim: int):
        """Plug-in points index the base's L+1 hidden states (0 = embeddings)."""
        if hidden_dim != self.hidden_dim:
            raise ConfigError(f"adapter width H={self.hidden_dim} does not match the base's hidden size {hidden_dim}")
        bad = [p for p in self.plug_layers if not 0 <= p <= num_layers]
        if bad:
            raise ConfigError(
                f"adapter plug-in layers {bad} do not exist in a {num_layers}-layer base "
                f"(valid: 0..{num_layers}; 0 is the embedding output). For a smaller base choose proportional "
                f"points, e.g. {proportional_plug_layers(num_layers)}."
            )


def proportional_plug_layers(num_layers: int, reference=(0, 11, 22), reference_layers=24) -> List[int]:
    """The paper's {0, 11, 22} of 24 layers, scaled to another depth."""
    return [round(p * num_layers / reference_layers) for p in reference]


def _transformer_cfg(cfg: AdapterArchConfig) -> TransformerConfig:
    tc = TransformerConfig()
    tc.encoder.embed_dim = cfg.down_dim
    tc.encoder.ffn_embed_dim = cfg.ffn_dim
    tc.encoder.attention_heads = cfg.heads
    tc.encoder.normalize_before = False  # post-LN, as in BERT/RoBERTa layers
    tc.dropout = cfg.dropout
    tc.attention_dropout = cfg.attention_dropout
    tc.activation_dropout = 0.0
    tc.activation_fn = "gelu"
    return tc


class AdapterLayer(nn.Module):
    def __init__(self, cfg: AdapterArchConfig):
        super().__init__()
        h, d = cfg.hidden_dim, cfg.down_dim
        # concat input fusion: [h_p ; a_prev] -> H before the layer (docs/reference/kadapter.md §1.1 option)
        self.input_proj = nn.Linear(2 * h, h) if cfg.input_fusion == "concat" else None
        self.down_proj = nn.Linear(h, d)
        tc = _transformer_cfg(cfg)
        self.encoder = nn.ModuleList(TransformerEncoderLayerBase(tc) for _ in range(cfg.num_layers))
        if cfg.layer_norm_eps != 1e-5:
            for layer in self.encoder:
                layer.self_attn_layer_norm.eps = cfg.layer_norm_eps
                layer.final_layer_norm.eps = cfg.layer_norm_eps
        self.up_proj = nn.Linear(d, h)
        self.reset_parameters(cfg)

    def reset_parameters(self, cfg):
        # tiny projections: the layer starts as (almost) the identity x -> x
        for proj in (self.down_proj, self.up_proj):
            nn.init.normal_(proj.weight, mean=0.0, std=cfg.init_std)
            nn.init.zeros_(proj.bias)
        if self.input_proj is not None:
            # [I | I]: concat fusion starts out as the add fusion of the released models
            h = cfg.hidden_dim
            with torch.no_grad():
                self.input_proj.weight.zero_()
                self.input_proj.weight[:, :h].copy_(torch.eye(h))
                self.input_proj.weight[:, h:].copy_(torch.eye(h))
                self.input_proj.bias.zero_()

    def fuse_input(self, hidden, previous):
        """x_k: the base state at this layer's plug-in point combined with the previous layer's output."""
        if self.input_proj is not None:
            return self.input_proj(torch.cat([hidden, previous], dim=-1))
        return hidden + previous

    def carry_delta(self, previous_delta):
        """How the input fusion passes a difference of previous outputs on: the fusion is affine, so
        fuse(h, a) - fuse(h, s) = (its a-half)(a - s); the bias and the h-half cancel."""
        if self.input_proj is None:
            return previous_delta
        return previous_delta @ self.input_proj.weight[:, self.input_proj.in_features // 2 :].T

    def residual(self, x, padding_mask: Optional[torch.Tensor]):
        """up(transformer_layers(down(x))): what the layer adds on top of its skip connection."""
        y = self.down_proj(x)
        for layer in self.encoder:
            y = layer(y, encoder_padding_mask=padding_mask)
        return self.up_proj(y)

    def forward(self, hidden, previous, padding_mask: Optional[torch.Tensor]):
        """``hidden``/``previous``: T×B×H; ``padding_mask``: B×T (True = pad) or None."""
        x = self.fuse_input(hidden, previous)
        return x + self.residual(x, padding_mask)


class KnowledgeAdapter(nn.Module):
    """One knowledge adapter: a chain of ``AdapterLayer`` over the base's hidden states."""

    def __init__(self, cfg: AdapterArchConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(AdapterLayer(cfg) for _ in cfg.plug_layers)

    def _mask(self, padding_mask):
        return padding_mask if self.cfg.mask_padding and padding_mask is not None and padding_mask.any() else None

    def forward(self, inner_states: List[torch.Tensor], padding_mask: Optional[torch.Tensor] = None, with_delta: bool = False):
        """``inner_states``: the base's L+1 hidden states, each T×B×H. Returns a_K, T×B×H, or with
        ``with_delta`` the pair (a_K, a_K - s_K) (see ``delta``) from the same pass."""
        mask = self._mask(padding_mask)
        out = torch.zeros_like(inner_states[0])
        delta = torch.zeros_like(out) if with_delta else None
        for plug, layer in zip(self.cfg.plug_layers, self.layers):
            x = layer.fuse_input(inner_states[plug], out)
            r = layer.residual(x, mask)
            out = x + r
            if with_delta:
                delta = layer.carry_delta(delta) + r
        return (out, delta) if with_delta else out

    def skip_path(self, inner_states: List[torch.Tensor]) -> torch.Tensor:
        """s_K: the adapter's output if every up-projection were zero, i.e. what its chain of skip
        connections alone carries from the base (Σ h[p_k] with add input fusion), T×B×H."""
        out = torch.zeros_like(inner_states[0])
        for plug, layer in zip(self.cfg.plug_layers, self.layers):
            out = layer.fuse_input(inner_states[plug], out)
        return out

    def delta(self, inner_states: List[torch.Tensor], padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """a_K - s_K: what the adapter's own layers add to the base states its skip connections carry;
        zero when the up-projections are. Accumulated layer by layer (d_k = carry(d_{k-1}) + up_k(...))
        rather than as a difference of two large vectors, so low precision loses nothing to cancellation."""
        return self.forward(inner_states, padding_mask, with_delta=True)[1]


def count_adapter_parameters(cfg: AdapterArchConfig) -> int:
    """Parameter count of one adapter, built on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        adapter = KnowledgeAdapter(cfg)
    return sum(p.numel() for p in adapter.parameters())
