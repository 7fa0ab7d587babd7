"""Small builders shared by the model tests (importable from any test file: pytest puts tests/ on the path)."""
import torch
from omegaconf import OmegaConf

import kadapter_fairseq  # noqa: F401  (registers the model)
from kadapter_fairseq.hub import load_base_dictionary
from kadapter_fairseq.models.roberta_kadapter import ARCH_DEFAULTS, RobertaKAdapterConfig, RobertaKAdapterModel


def build(base, **overrides):
    """A tiny roberta_kadapter on ``base`` (fac and lin adapters unless overridden), seeded: the same weights each call."""
    values = dict(ARCH_DEFAULTS["roberta_kadapter_tiny"], roberta_path=base, adapter_names="fac,lin")
    values.update(overrides)
    cfg = OmegaConf.structured(RobertaKAdapterConfig(**values))
    torch.manual_seed(0)
    return RobertaKAdapterModel.from_base(cfg, load_base_dictionary(base))
