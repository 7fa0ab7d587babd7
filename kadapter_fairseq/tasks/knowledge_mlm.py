"""``knowledge_mlm``: an adapter learns facts by predicting the masked object of verbalised facts.

The sentences are a knowledge graph's facts in its training templates (``data_prep.kg``'s
``mlm/``: ``input0/`` pieces and ``{split}.positions``, the object's position with ``<s>`` = 0).
Each example is its sentence with the object replaced by ``<mask>``; the target is the object's
token, scored by the base's own masked-LM head over the fused feature. With the base frozen
(``train_phase=knowledge``) only the adapter learns, and with ``model.adapter_fusion=delta`` the
head reads h_L + Σ (a_K − s_K): the feature ``kadapter-probe lama --fusion delta`` scores, so
probing the trained adapter reads exactly what it was trained through (docs/knowledge.md). The
head is frozen unless ``model.train_lm_head=true``.

An option beside the paper's factual objective (relation classification, ``relation_pretrain``),
which stays the default ``fac`` recipe. With ``model.adapter_names=''`` and
``model.train_phase=full`` the same task trains the base itself on the fact sentences (a
"multitask"-style comparison: the same knowledge put into the base).
"""
import logging
import os
from dataclasses import dataclass, field

import torch
from fairseq.data import BaseWrapperDataset, NestedDictionaryDataset
from fairseq.tasks import register_task
from omegaconf import II, MISSING

from ..data.datasets import check_count, load_int_lists
from ..errors import ConfigError, DataError
from .base import FeatureCacheConfig, KAdapterTask, load_source, source_inputs

logger = logging.getLogger(__name__)


@dataclass
class KnowledgeMLMConfig(FeatureCacheConfig):
    data: str = field(default=MISSING, metadata={"help": "the mlm/ directory written by data_prep.kg"})
    max_positions: int = field(default=512, metadata={"help": "longest sequence accepted, <s> and </s> included"})
    save_adapters: bool = field(
        default=True, metadata={"help": "write <save_dir>/adapters/<name>.pt for each trained adapter at every checkpoint"}
    )
    no_shuffle: bool = field(default=False)
    seed: int = II("common.seed")


class MaskedAtDataset(BaseWrapperDataset):
    """Each sequence with the token at its given position replaced by ``<mask>``."""

    def __init__(self, dataset, positions, mask_idx: int):
        super().__init__(dataset)
        self.positions = positions
        self.mask_idx = mask_idx

    def __getitem__(self, index):
        item = self.dataset[index].clone()
        item[self.positions[index]] = self.mask_idx
        return item


class TokenAtDataset(BaseWrapperDataset):
    """The token at each sequence's given position (the masked object: the target)."""

    def __init__(self, dataset, positions):
        super().__init__(dataset)
        self.positions = positions

    def __getitem__(self, index):
        return self.dataset[index][self.positions[index]]

    def collater(self, samples):
        return torch.stack(samples) if samples else torch.empty(0, dtype=torch.long)


def load_masked_fact_split(data_dir, split, dictionary, max_positions=None):
    """``(src, positions)``: the unmasked sequences and the object position of each (checked)."""
    src = load_source(data_dir, split, dictionary, max_positions=max_positions)
    path = os.path.join(data_dir, f"{split}.positions")
    rows = load_int_lists(path)
    check_count(path, rows, len(src))
    positions = []
    for n, (row, size) in enumerate(zip(rows, src.sizes), 1):
        if len(row) != 1:
            raise DataError(path, n, f"expected one position (the object's), got {len(row)}")
        if not 1 <= row[0] < size - 1:
            raise DataError(path, n, f"position {row[0]} falls outside the {size}-position sequence (<s> = 0)")
        positions.append(row[0])
    return src, positions


@register_task("knowledge_mlm", dataclass=KnowledgeMLMConfig)
class KnowledgeMLMTask(KAdapterTask):
    def __init__(self, cfg, dictionary):
        super().__init__(cfg, dictionary)
        self.mask_idx = dictionary.index("<mask>")

    def load_dataset(self, split, combine=False, **kwargs):
        src, positions = load_masked_fact_split(self.cfg.data, split, self.dictionary, self.cfg.max_positions)
        masked = MaskedAtDataset(src, positions, self.mask_idx)
        # the cache holds base states of the masked input, which is what the model reads
        defn = source_inputs(masked, self.dictionary, self.cached_features(split, self.cfg.data, "input0", split, src))
        defn["target"] = TokenAtDataset(src, positions)
        dataset = self.shuffled(NestedDictionaryDataset(defn, sizes=[src.sizes]), len(src))
        logger.info(f"loaded {len(src)} masked facts from {self.cfg.data} ({split})")
        self.datasets[split] = dataset
        return dataset

    def register_heads(self, model):
        """No head of its own: the base's masked-LM head scores the object. Checked here, where the model
        is known: the LM head must read the feature the LAMA probe reads."""
        if len(getattr(model, "adapters", {}) or {}) and model.fusion.mode != "delta":
            raise ConfigError(
                f"knowledge_mlm trains adapters through the base's LM head over the delta fusion (the feature the LAMA "
                f"probe reads); model.adapter_fusion={model.fusion.mode} would train another one: set model.adapter_fusion=delta"
            )

    def post_save(self, cp_path, num_updates):
        super().post_save(cp_path, num_updates)
        model = self._export_model
        if cp_path is None or model is None or not getattr(model, "lm_head_trains", False) or model.base_trains:
            return
        # a trained head is part of what the adapter was trained through: keep it beside the adapters
        from ..atomic import torch_save

        head = model.encoder.lm_head
        state = {k: v.detach().cpu() for k, v in head.state_dict().items() if k != "weight"}  # weight: the base's embedding
        path = os.path.join(os.path.dirname(cp_path), "adapters", "lm_head.pt")
        torch_save({"lm_head": state, "base_fingerprint": model.base_fingerprint, "num_updates": num_updates}, path)
        logger.info(f"saved the trained LM head ({num_updates} updates) to {path}")
