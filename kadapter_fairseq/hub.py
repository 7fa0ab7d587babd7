"""``KAdapterHub``: use a base + adapters from Python, like ``RobertaModel.from_pretrained``.

    hub = KAdapterHub.from_pretrained("roberta.large", adapters={"fac": "fac.pt", "lin": "lin.pt"})
    tokens = hub.encode("Obama was born in Hawaii.")
    out = hub.extract_features(tokens)   # {"base", "adapters": {"fac", "lin"}, "fused"}

``precision="bf16"`` (or ``"auto"``: bf16 where the CPU has AMX/AVX512-BF16 or the GPU is sm80+,
else fp32) stores the whole model in bf16 once, as ``kadapter-train common.bf16=true`` does; the
features it returns are then bf16. Scores over the vocabulary (``masked_lm_logits``) are computed
by an fp32 copy of the base's masked-LM head, so that rankings are not decided by bf16 rounding.
"""
import copy
import os
from typing import Dict, Optional

import torch
import torch.nn as nn
from fairseq.data import Dictionary
from omegaconf import OmegaConf

from . import checkpoint_utils as ku
from .bpe import find_bpe_files, load_bpe
from .data.dictionary import load_roberta_dictionary
from .errors import CheckpointError, ConfigError
from .models.roberta_kadapter import ARCH_DEFAULTS, RobertaKAdapterConfig, RobertaKAdapterModel, resolve_base_path


def load_base_dictionary(base_dir) -> Dictionary:
    return load_roberta_dictionary(os.path.join(base_dir, "dict.txt"), "a RoBERTa base directory holds model.pt and dict.txt")


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


class KAdapterHub(nn.Module):
    def __init__(self, model: RobertaKAdapterModel, dictionary: Dictionary, bpe=None, task=None, precision: str = "fp32"):
        super().__init__()
        self.model = model
        self.dictionary = dictionary
        self.bpe = bpe
        self.task = task
        self.model.eval()
        self.precision, self.precision_reason = "fp32", "the weights as loaded"
        self._fp32_lm_head = None
        self.set_precision(precision)

    @property
    def device(self):
        return self.model.encoder.sentence_encoder.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.encoder.sentence_encoder.embed_tokens.weight.dtype

    def set_precision(self, precision: str):
        """Store the model in ``fp32``, ``bf16`` or ``auto`` (see the module docstring), once; returns
        ``(precision, reason)``. Going back from bf16 to fp32 is refused: the fp32 weights are gone."""
        from .precision import resolve

        chosen, reason = resolve(precision, on_gpu=self.device.type == "cuda")
        if chosen == self.precision:
            return chosen, reason
        if self.precision != "fp32":
            raise ConfigError(f"this hub's model is stored in {self.precision}; load it again for {chosen}")
        # the masked-LM head's output projection is tied to the input embedding, which the cast rounds:
        # an fp32 copy is taken first, for scores over the vocabulary
        self._fp32_lm_head = copy.deepcopy(self.model.encoder.lm_head).float()
        self.model.to(dtype=DTYPES[chosen])
        self.precision, self.precision_reason = chosen, reason
        return chosen, reason

    @property
    def lm_head(self) -> nn.Module:
        """The base's masked-LM head in fp32: the model's own while it is fp32, else the copy made
        before the cast (a submodule of the hub: ``hub.to(device)`` moves it with the model)."""
        return self._fp32_lm_head if self._fp32_lm_head is not None else self.model.encoder.lm_head

    def masked_lm_logits(self, features: torch.Tensor) -> torch.Tensor:
        """fp32 scores over the vocabulary for features (… × H) of any precision."""
        return self.lm_head(features.float())

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        base_dir,
        adapters: Optional[Dict[str, Optional[str]]] = None,
        fusion: str = "concat",
        checkpoint_file: str = "model.pt",
        arch: str = "roberta_kadapter_large",
        bpe: Optional[str] = None,
        gpt2_encoder_json: Optional[str] = None,
        gpt2_vocab_bpe: Optional[str] = None,
        sentencepiece_model: Optional[str] = None,
        require_fusion: bool = False,
        precision: str = "fp32",
        **model_overrides,
    ):
        """Load a base directory and adapters by path (``{"fac": "fac.pt"}``; a ``None``
        path makes a freshly initialised adapter, sized by ``arch`` and ``model_overrides``).
        Each adapter file is read once. ``require_fusion``: with ``fusion="concat"``, refuse
        adapter files that do not hold the fusion weights (instead of a random fusion).
        ``fusion`` defaults to ``concat``, the fusion downstream fine-tuning trains (``kadapter-probe``
        defaults to ``delta`` instead: it trains nothing, and the base's LM head reads h_L-like
        features; docs/probing.md). ``precision``: ``fp32``, ``bf16`` or ``auto`` (module docstring)."""
        if not os.path.isdir(base_dir):
            raise ConfigError(f"base directory not found: {base_dir}")
        resolve_base_path(base_dir, checkpoint_file)
        adapters = dict(adapters or {})
        if arch not in ARCH_DEFAULTS:
            raise ConfigError(f"unknown arch {arch!r}; choose one of {sorted(ARCH_DEFAULTS)}")
        values = dict(ARCH_DEFAULTS[arch])
        values.update(model_overrides)
        values.update(
            roberta_path=base_dir,
            roberta_checkpoint=checkpoint_file,
            adapter_names=",".join(adapters),
            adapter_paths=",".join(f"{n}={p}" for n, p in adapters.items() if p),
            adapter_fusion=fusion,
            train_phase="efficient",
        )
        cfg = OmegaConf.structured(RobertaKAdapterConfig(**values))
        dictionary = load_base_dictionary(base_dir)
        states = {name: ku.load_adapter_file(path) for name, path in adapters.items() if path}
        if require_fusion and fusion == "concat":
            check_fusion_weights(states, adapters)
        model = RobertaKAdapterModel.from_base(cfg, dictionary, adapter_states=states)
        for name, state in states.items():
            # heads saved beside the adapter; a fusion saved for exactly these adapters, when present
            saved = state.get("fusion") or {}
            whole = saved.get("mode") == fusion and saved.get("names") == list(adapters)
            model.load_adapters(adapters[name], names=[name], load_fusion=whole, load_heads=True, state=state)
        return cls(model, dictionary, _maybe_bpe(base_dir, bpe, gpt2_encoder_json, gpt2_vocab_bpe, sentencepiece_model),
                   precision=precision)

    @classmethod
    def from_checkpoint(cls, path, data_dir=None, roberta_path=None, precision: str = "fp32", **bpe_files):
        """Load a full checkpoint written by ``fairseq-train`` (model, heads and task); ``precision``
        as for ``from_pretrained``."""
        from fairseq import tasks

        state = ku.load_file(path, "fairseq checkpoint")
        if not isinstance(state, dict) or state.get("cfg") is None or "model" not in state:
            raise CheckpointError(f"{path} is not a checkpoint written by fairseq-train (no 'cfg'/'model')")
        cfg = OmegaConf.create(state["cfg"])
        OmegaConf.set_struct(cfg, False)
        if data_dir is not None:
            cfg.task.data = data_dir
        if roberta_path is not None:
            cfg.model.roberta_path = roberta_path
        task = tasks.setup_task(cfg.task)
        model = task.build_model(cfg.model)
        model.load_state_dict(state["model"], strict=True, model_cfg=cfg.model)
        base_dir = cfg.model.roberta_path
        base_dir = base_dir if os.path.isdir(base_dir) else os.path.dirname(base_dir)
        bpe = _maybe_bpe(base_dir, **bpe_files) if bpe_files or base_dir else None
        return cls(model, task.source_dictionary, bpe, task, precision=precision)

    # ------------------------------------------------------------------------------------------
    def encode(self, sentence: str, *addl_sentences: str, no_separator=False) -> torch.LongTensor:
        """``<s> sentence </s>`` (and ``</s> next </s>`` per extra sentence), as RoBERTa's hub does."""
        if self.bpe is None:
            raise ConfigError("this hub has no tokenizer files: pass gpt2_encoder_json/gpt2_vocab_bpe or sentencepiece_model")
        text = "<s> " + self.bpe.encode(sentence) + " </s>"
        for s in addl_sentences:
            text += (" " if no_separator else " </s> ") + self.bpe.encode(s) + " </s>"
        return self.dictionary.encode_line(text, append_eos=False, add_if_not_exist=False).long()

    def decode(self, tokens: torch.LongTensor) -> str:
        tokens = tokens[tokens.ne(self.dictionary.bos()) & tokens.ne(self.dictionary.pad())]
        return self.bpe.decode(self.dictionary.string(tokens[tokens.ne(self.dictionary.eos())]))

    @torch.no_grad()
    def extract_features(self, tokens: torch.LongTensor) -> dict:
        """``{"base": B×T×H last base layer, "adapters": {name: B×T×H}, "fused": B×T×H}``, in the hub's precision."""
        if tokens.dim() == 1:
            tokens = tokens.unsqueeze(0)
        if tokens.size(-1) > self.model.max_positions():
            raise ConfigError(f"{tokens.size(-1)} tokens exceed the model's {self.model.max_positions()} positions")
        fused, extra = self.model.extract_features(tokens.to(self.device))
        return {"base": extra["base"], "adapters": extra["adapters"], "fused": fused}

    def save_adapters(self, path, names=None, include_fusion=False, include_heads=False):
        if self.precision != "fp32":
            # the fp32 weights are gone: the file would hold bf16-rounded adapters under an fp32 file's name
            raise ConfigError(f"this hub's model is stored in {self.precision}; load it in fp32 to save adapter files")
        self.model.save_adapters(path, names, include_fusion, include_heads)


def check_fusion_weights(states: Dict[str, dict], paths: Dict[str, str]):
    """The concat fusion's weights must come from the adapter files: each adapter's own
    projection, and with several adapters the combining layer from a file saved for all of them."""
    names = list(paths)
    for name in names:
        saved = states[name].get("fusion") if name in states else None
        if not saved or saved.get("mode") != "concat" or not any(k.startswith(f"proj.{name}.") for k in saved["state_dict"]):
            where = paths[name] or f"adapter {name!r} (no file given)"
            raise CheckpointError(
                f"{where}: holds no concat-fusion weights for adapter {name!r}; export it with "
                "`kadapter-export --include-fusion`, or use the add fusion"
            )
    if len(names) > 1 and not any((s.get("fusion") or {}).get("names") == names for s in states.values()):
        raise CheckpointError(
            f"none of {', '.join(paths[n] for n in names)} holds the concat fusion of {names} together "
            "(its combining layer); export them from one checkpoint with `kadapter-export --include-fusion`"
        )


def _maybe_bpe(base_dir, bpe=None, gpt2_encoder_json=None, gpt2_vocab_bpe=None, sentencepiece_model=None):
    """The tokenizer when its files are there; explicit paths must exist."""
    explicit = bpe or gpt2_encoder_json or gpt2_vocab_bpe or sentencepiece_model
    try:
        files = find_bpe_files(base_dir, bpe, gpt2_encoder_json, gpt2_vocab_bpe, sentencepiece_model)
    except Exception:
        if explicit:
            raise
        return None  # encode() explains what is missing when called
    return load_bpe(files)
