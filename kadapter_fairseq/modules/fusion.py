"""Output fusion of the base's last layer with the adapters' outputs (docs/reference/kadapter.md §1.3).

Three modes:

- ``concat`` (the paper's): per adapter Linear(2H→H)([h_L ; a_K]), then Linear(n·H→H) over the
  per-adapter features when there are several;
- ``add`` (the released code's): h_L + Σ_K a_K;
- ``delta``: h_L plus each adapter's *delta*, its output minus what its skip connections alone
  carry: h_L + Σ_K (a_K − s_K), with s_K = ``KnowledgeAdapter.skip_path`` (Σ_k h[p_k] for add input
  fusion). It has no parameters and equals the base's own last layer when the adapters'
  up-projections are zero, so the base's masked-LM head reads it without retraining: it is the
  feature the LAMA probe scores and the one ``knowledge_mlm`` trains (docs/knowledge.md). ``add``
  instead feeds the head h_L + Σ_k h[p_k] + ..., a sum of base states it has never seen.

No activations, as in the released models.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn

from ..errors import ConfigError

OUTPUT_FUSIONS = ("concat", "add", "delta")


class AdapterFusion(nn.Module):
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

    @property
    def reads_delta(self) -> bool:
        """Whether ``forward`` needs the adapters' deltas (``KnowledgeAdapter.delta``) rather than their outputs."""
        return self.mode == "delta" and bool(self.names)

    def forward(
        self,
        last_hidden: torch.Tensor,
        adapter_outputs: Dict[str, torch.Tensor],
        adapter_deltas: Optional[Dict[str, torch.Tensor]] = None,
    ) -> torch.Tensor:
        if not self.names:
            return last_hidden
        if self.mode in ("add", "delta"):
            if self.mode == "delta" and adapter_deltas is None:
                raise ConfigError("the delta fusion reads the adapters' deltas (KnowledgeAdapter.delta); none were given")
            terms = adapter_deltas if self.mode == "delta" else adapter_outputs
            out = last_hidden
            for name in self.names:
                out = out + terms[name]
            return out
        feats = [self.proj[name](torch.cat([last_hidden, adapter_outputs[name]], dim=-1)) for name in self.names]
        if self.combine is None:
            return feats[0]
        return self.combine(torch.cat(feats, dim=-1))
