"""Output fusion of the base's last layer with the adapters' outputs (docs/reference/kadapter.md §1.3)."""
from typing import Dict, Sequence

import torch
import torch.nn as nn

from ..errors import ConfigError

OUTPUT_FUSIONS = ("concat", "add")


class AdapterFusion(nn.Module):
    """concat: per adapter Linear(2H→H)([h_L ; a_K]), then Linear(n·H→H) over the
    per-adapter features when there are several; add: h_L + Σ a_K.
    No activations, as in the released models."""

    def __init__(self, names: Sequence[str], hidden_dim: int, mode: str = "concat"):
        super().__init__()
        if str(mode) not in OUTPUT_FUSIONS:
            raise ConfigError(f"adapter fusion must be one of {OUTPUT_FUSIONS}, got {mode!r}")
        self.names = list(names)
        self.mode = str(mode)
        self.proj = nn.ModuleDict()
        self.combine = None
        if mode == "concat" and self.names:
            for name in self.names:
                self.proj[name] = nn.Linear(2 * hidden_dim, hidden_dim)
            if len(self.names) > 1:
                self.combine = nn.Linear(len(self.names) * hidden_dim, hidden_dim)

    def forward(self, last_hidden: torch.Tensor, adapter_outputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.names:
            return last_hidden
        if self.mode == "add":
            out = last_hidden
            for name in self.names:
                out = out + adapter_outputs[name]
            return out
        feats = [self.proj[name](torch.cat([last_hidden, adapter_outputs[name]], dim=-1)) for name in self.names]
        if self.combine is None:
            return feats[0]
        return self.combine(torch.cat(feats, dim=-1))
