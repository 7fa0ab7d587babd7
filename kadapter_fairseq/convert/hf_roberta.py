"""Hugging Face RoBERTa directory -> fairseq RoBERTa directory.

The destination is what ``fairseq.models.roberta.RobertaModel.from_pretrained``
and ``roberta_kadapter``'s ``roberta_path`` read: ``model.pt`` (a checkpoint in
the shape fairseq's own trainer writes, so it loads under torch's
``weights_only`` default), ``dict.txt`` and the GPT-2 BPE files
``encoder.json``/``vocab.bpe``.

Token index i of the source stays index i: ``encoder.json`` is the source's
``vocab.json`` (fairseq's GPT-2 BPE emits each piece as the string of its id)
and ``dict.txt`` lists those id strings in id order, so the dictionary maps id
string ``"i"`` back to row i of the embedding.
"""
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from .. import atomic
from .. import checkpoint_utils as ku
from ..errors import CheckpointError, ConfigError

# fairseq's Dictionary reserves these indices; RoBERTa's vocab.json puts the same tokens there
FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
MASK = "<mask>"
# fairseq's RoBERTa builds every LayerNorm with torch's default eps
FAIRSEQ_LAYER_NORM_EPS = 1e-5

# HF activation name -> fairseq activation name with the same formula
ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_accurate",
    "gelu_fast": "gelu_accurate",
    "gelu_pytorch_tanh": "gelu_accurate",
    "relu": "relu",
    "tanh": "tanh",
    "linear": "linear",
}

# inside one transformer layer: HF module -> fairseq module
LAYER_MODULES = {
    "attention.self.query": "self_attn.q_proj",
    "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj",
    "attention.output.dense": "self_attn.out_proj",
    "attention.output.LayerNorm": "self_attn_layer_norm",
    "intermediate.dense": "fc1",
    "output.dense": "fc2",
    "output.LayerNorm": "final_layer_norm",
}

LM_HEAD_MODULES = {"lm_head.dense": "encoder.lm_head.dense", "lm_head.layer_norm": "encoder.lm_head.layer_norm"}

# source tensors with no fairseq counterpart that are dropped on purpose (reported, never silent)
DROPPABLE_PREFIXES = {
    "pooler.": "pooler (fairseq RoBERTa has none; fairseq classification heads bring their own)",
    "classifier.": "task head of a fine-tuned HF model",
    "qa_outputs.": "task head of a fine-tuned HF model",
}
# non-persistent buffers that older transformers versions saved
BUFFER_KEYS = ("embeddings.position_ids", "embeddings.token_type_ids")

SE = "encoder.sentence_encoder."


@dataclass
class HFConversion:
    """What a conversion did; also written to ``DEST/conversion.json``."""

    source: str
    dest: str
    model_args: dict
    vocab_rows: int
    lm_head: str = "converted"
    dropped: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    max_abs_diff: Optional[float] = None

    def to_json(self):
        return {
            "converter": "kadapter-convert hf-roberta",
            "source": self.source,
            "model_args": self.model_args,
            "vocab_rows": self.vocab_rows,
            "lm_head": self.lm_head,
            "dropped_tensors": self.dropped,
            "notes": self.notes,
            "verified_max_abs_diff": self.max_abs_diff,
        }


# ----------------------------------------------------------------------------------------------
# reading the source


def read_hf_config(src: str) -> dict:
    path = os.path.join(src, "config.json")
    if not os.path.isfile(path):
        raise CheckpointError(f"{src} is not a Hugging Face model directory: no config.json")
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    model_type = cfg.get("model_type")
    if model_type != "roberta":
        arch = ", ".join(cfg.get("architectures") or []) or "unknown architecture"
        raise ConfigError(
            f"{path}: model_type is {model_type!r} ({arch}), not 'roberta'. Only RoBERTa checkpoints convert "
            "(XLM-R, CamemBERT, BERT and others have other vocabularies or layouts)."
        )
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ConfigError(f"{path}: position_embedding_type {cfg['position_embedding_type']!r}: fairseq RoBERTa has absolute positions only")
    if cfg.get("is_decoder") or cfg.get("add_cross_attention"):
        raise ConfigError(f"{path}: a decoder / cross-attention RoBERTa has no fairseq RoBERTa counterpart")
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "max_position_embeddings"):
        if not isinstance(cfg.get(key), int):
            raise ConfigError(f"{path}: missing or non-integer {key!r}")
    return cfg


def _weight_files(src: str) -> List[str]:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = os.path.join(src, index_name)
        if os.path.isfile(index):
            try:
                with open(index, encoding="utf-8") as f:
                    shards = sorted(set(json.load(f)["weight_map"].values()))
            except (OSError, ValueError, KeyError) as e:
                raise CheckpointError(f"cannot read shard index {index}: {e}") from None
            return [os.path.join(src, s) for s in shards]
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = os.path.join(src, name)
        if os.path.isfile(path):
            return [path]
    raise CheckpointError(f"no weights in {src}: expected model.safetensors or pytorch_model.bin (or a sharded index)")


def load_torch_file(path, what):
    """``checkpoint_utils.load_file``, plus the OSError torch raises on some truncated zip files."""
    try:
        return ku.load_file(path, what)
    except OSError as e:
        raise CheckpointError(f"cannot read {what} {path}: the file is truncated, corrupt or not a torch checkpoint ({e})") from None


def _load_weight_file(path: str) -> Dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        if not os.path.isfile(path):
            raise CheckpointError(f"weights file not found: {path}")
        try:
            from safetensors.torch import load_file
        except ImportError:  # pragma: no cover - safetensors ships with transformers
            raise ConfigError(f"reading {path} needs the 'safetensors' package: pip install 'kadapter-fairseq[hf]'") from None
        try:
            return load_file(path, device="cpu")
        except Exception as e:  # safetensors raises its own SafetensorError / OSError types
            raise CheckpointError(f"cannot read {path}: the file is truncated, corrupt or not safetensors ({e})") from None
    state = load_torch_file(path, "Hugging Face weights")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors")
    return state


def load_hf_state_dict(src: str) -> Dict[str, torch.Tensor]:
    state = {}
    for path in _weight_files(src):
        state.update(_load_weight_file(path))
    return state


def read_hf_vocab(src: str) -> Tuple[Dict[str, int], List[str], str]:
    """The byte-level BPE: ``vocab.json`` + ``merges.txt``, else ``tokenizer.json``'s model."""
    vocab_path, merges_path = os.path.join(src, "vocab.json"), os.path.join(src, "merges.txt")
    if os.path.isfile(vocab_path) and os.path.isfile(merges_path):
        try:
            with open(vocab_path, encoding="utf-8") as f:
                vocab = json.load(f)
            with open(merges_path, encoding="utf-8") as f:
                merges = [ln.rstrip("\n") for ln in f]
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot read the tokenizer files in {src}: {e}") from None
        merges = [m for m in merges if m.strip() and not m.startswith("#version")]
        return _checked_vocab(vocab, vocab_path), merges, vocab_path
    tok_path = os.path.join(src, "tokenizer.json")
    if os.path.isfile(tok_path):
        try:
            with open(tok_path, encoding="utf-8") as f:
                model = json.load(f)["model"]
        except (OSError, ValueError, KeyError) as e:
            raise CheckpointError(f"cannot read {tok_path}: {e}") from None
        if model.get("type") != "BPE":
            raise ConfigError(f"{tok_path}: tokenizer model is {model.get('type')!r}, not RoBERTa's byte-level BPE")
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
        return _checked_vocab(model.get("vocab", {}), tok_path), merges, tok_path
    raise CheckpointError(f"no tokenizer in {src}: expected vocab.json + merges.txt (or tokenizer.json)")


def _checked_vocab(vocab, path):
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise CheckpointError(f"{path}: expected a token -> id mapping")
    if len(set(vocab.values())) != len(vocab):
        raise CheckpointError(f"{path}: several tokens share an id")
    return vocab


# ----------------------------------------------------------------------------------------------
# vocabulary


def dictionary_symbols(vocab: Dict[str, int], rows: int, where: str) -> List[str]:
    """``dict.txt`` symbols for indices 4.. so that index i of the dictionary is row i of the embedding.

    The trailing ``<mask>`` is left out, as in fairseq's own dict.txt: RoBERTa
    tasks append it. A ``<mask>`` elsewhere is listed literally so that the
    task's ``add_symbol("<mask>")`` finds it in place.
    """
    by_id = {i: t for t, i in vocab.items()}
    wrong = [(i, by_id.get(i), tok) for i, tok in enumerate(FAIRSEQ_SPECIALS) if by_id.get(i) != tok]
    if wrong:
        found = ", ".join(f"id {i} is {got!r} (fairseq needs {want!r})" for i, got, want in wrong)
        raise ConfigError(
            f"{where}: token indices cannot be preserved: fairseq reserves ids 0-3 for {' '.join(FAIRSEQ_SPECIALS)} but {found}"
        )
    too_big = sorted(i for i in by_id if i >= rows or i < 0)
    if too_big:
        raise ConfigError(f"{where}: token ids {too_big[:5]} have no row in the {rows}-row embedding matrix")
    if MASK not in vocab:
        raise ConfigError(f"{where}: no {MASK} token; RoBERTa tasks need one and the embedding matrix has no row to give it")
    mask_id = vocab[MASK]
    symbols = []
    for i in range(len(FAIRSEQ_SPECIALS), rows):
        if i == mask_id:
            if i == rows - 1:
                break
            symbols.append(MASK)
        elif i in by_id:
            symbols.append(str(i))
        else:  # an id the tokenizer never emits (padded vocabulary), as fairseq pads its own dicts
            symbols.append(f"madeupword{i:04d}")
    return symbols


def write_bpe_files(dest, vocab, merges):
    with open(os.path.join(dest, "encoder.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    # fairseq drops the first line (header) and the last (after the final newline) of vocab.bpe
    with open(os.path.join(dest, "vocab.bpe"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for m in merges:
            f.write(m + "\n")


def write_dict(dest, symbols):
    with open(os.path.join(dest, "dict.txt"), "w", encoding="utf-8") as f:
        for s in symbols:
            f.write(f"{s} 1\n")


# ----------------------------------------------------------------------------------------------
# weights


def _strip_prefix(state):
    """HF task models keep the encoder under ``roberta.``; a bare RobertaModel does not."""
    if any(k.startswith("roberta.") for k in state):
        return {(k[len("roberta."):] if k.startswith("roberta.") else k): v for k, v in state.items()}
    return dict(state)


def fairseq_model_args(cfg: dict, untie_lm_head: bool) -> dict:
    pad = cfg.get("pad_token_id", 1)
    return {
        "_name": "roberta",
        "arch": "roberta",
        "encoder_layers": cfg["num_hidden_layers"],
        "encoder_embed_dim": cfg["hidden_size"],
        "encoder_ffn_embed_dim": cfg["intermediate_size"],
        "encoder_attention_heads": cfg["num_attention_heads"],
        "activation_fn": ACTIVATIONS[cfg.get("hidden_act", "gelu")],
        "dropout": float(cfg.get("hidden_dropout_prob", 0.1)),
        "attention_dropout": float(cfg.get("attention_probs_dropout_prob", 0.1)),
        "activation_dropout": 0.0,
        "pooler_dropout": 0.0,
        "pooler_activation_fn": "tanh",
        # fairseq's learned positions have max_positions + padding_idx + 1 rows, as HF's table does
        "max_positions": cfg["max_position_embeddings"] - pad - 1,
        "max_source_positions": cfg["max_position_embeddings"] - pad - 1,
        "tokens_per_sample": cfg["max_position_embeddings"] - pad - 1,
        "encoder_learned_pos": True,
        "layernorm_embedding": True,
        "no_scale_embedding": True,
        "encoder_normalize_before": False,
        "untie_weights_roberta": bool(untie_lm_head),
        "encoder_layerdrop": 0.0,
        "encoder_layers_to_keep": None,
        "no_token_positional_embeddings": False,
        "adaptive_input": False,
        "quant_noise_pq": 0,
        "quant_noise_pq_block_size": 8,
        "quant_noise_scalar": 0,
        "spectral_norm_classification_head": False,
    }


def convert_state_dict(hf_state: Dict[str, torch.Tensor], cfg: dict, where: str):
    """HF RoBERTa tensors -> fairseq RoBERTa tensors. Returns (state, lm_head status, untie, dropped, notes)."""
    src = {k: v.float() if v.is_floating_point() else v for k, v in _strip_prefix(hf_state).items()}
    out, dropped, notes = {}, {}, []
    used = set()
    H, L, F_ = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"]
    if H % cfg["num_attention_heads"]:
        raise ConfigError(f"{where}/config.json: hidden_size {H} is not divisible by num_attention_heads {cfg['num_attention_heads']}")
    required = {
        "embeddings.word_embeddings.weight": None,
        "embeddings.position_embeddings.weight": (cfg["max_position_embeddings"], H),
        "embeddings.LayerNorm.weight": (H,),
        "embeddings.LayerNorm.bias": (H,),
    }
    layer_shapes = {"intermediate.dense": (F_, H), "output.dense": (H, F_)}
    for i in range(L):
        for hf_mod in LAYER_MODULES:
            w = (H,) if "LayerNorm" in hf_mod else layer_shapes.get(hf_mod, (H, H))
            required[f"encoder.layer.{i}.{hf_mod}.weight"] = w
            required[f"encoder.layer.{i}.{hf_mod}.bias"] = w[:1]
    missing = [k for k in required if k not in src]
    if missing:
        raise CheckpointError(f"{where}: the weights lack {len(missing)} RoBERTa tensor(s) that config.json implies: {missing}")
    wrong = [f"{k} {tuple(src[k].shape)} (expected {shape})" for k, shape in required.items() if shape and tuple(src[k].shape) != shape]
    if src["embeddings.word_embeddings.weight"].dim() != 2 or src["embeddings.word_embeddings.weight"].shape[1] != H:
        wrong.insert(0, f"embeddings.word_embeddings.weight {tuple(src['embeddings.word_embeddings.weight'].shape)} (expected (vocab, {H}))")
    if wrong:
        raise CheckpointError(f"{where}: tensor shapes do not match config.json: {wrong}")

    def take(key):
        if key not in src:
            raise CheckpointError(f"{where}: tensor {key!r} is missing")
        used.add(key)
        return src[key]

    words = take("embeddings.word_embeddings.weight")
    positions = take("embeddings.position_embeddings.weight").clone()
    if "embeddings.token_type_embeddings.weight" in src:
        # fairseq has no token types; every HF token adds type 0's row, so it folds into each position's row
        token_types = take("embeddings.token_type_embeddings.weight")
        positions += token_types[0]
        if token_types.shape[0] > 1:
            notes.append(f"token_type_embeddings has {token_types.shape[0]} rows; row 0 (the default type) was folded in, the others dropped")
    out[SE + "embed_tokens.weight"] = words
    out[SE + "embed_positions.weight"] = positions
    out[SE + "layernorm_embedding.weight"] = take("embeddings.LayerNorm.weight")
    out[SE + "layernorm_embedding.bias"] = take("embeddings.LayerNorm.bias")
    out[SE + "version"] = torch.tensor([3.0])

    for i in range(L):
        for hf_mod, fs_mod in LAYER_MODULES.items():
            for kind in ("weight", "bias"):
                out[f"{SE}layers.{i}.{fs_mod}.{kind}"] = take(f"encoder.layer.{i}.{hf_mod}.{kind}")
    layer_keys = [k for k in src if k.startswith("encoder.layer.")]
    extra_layers = sorted({int(k.split(".")[2]) for k in layer_keys if k.split(".")[2].isdigit() and int(k.split(".")[2]) >= L})
    if extra_layers:
        raise CheckpointError(f"{where}: weights hold layers {extra_layers} beyond num_hidden_layers={L} in config.json")

    untie = False
    if "lm_head.dense.weight" in src:
        for hf_mod, fs_mod in LM_HEAD_MODULES.items():
            for kind in ("weight", "bias"):
                out[f"{fs_mod}.{kind}"] = take(f"{hf_mod}.{kind}")
        # HF ties lm_head.bias to lm_head.decoder.bias; the decoder's copy is the one its forward uses
        bias_key = "lm_head.decoder.bias" if "lm_head.decoder.bias" in src else "lm_head.bias"
        out["encoder.lm_head.bias"] = take(bias_key)
        used.update(k for k in ("lm_head.bias", "lm_head.decoder.bias") if k in src)
        decoder = src.get("lm_head.decoder.weight")
        used.add("lm_head.decoder.weight")
        untie = decoder is not None and not torch.equal(decoder, words)
        out["encoder.lm_head.weight"] = decoder if untie else words
        lm_head = "converted" + (" (untied output embedding)" if untie else "")
        if cfg.get("hidden_act", "gelu") != "gelu":
            notes.append("HF's LM head always uses erf-GELU; fairseq's uses the encoder's activation_fn, so LM-head scores differ slightly")
    else:
        lm_head = "absent in source: freshly initialised (only the encoder's hidden states are the source's)"
        out["encoder.lm_head.weight"] = words

    for k in src:
        if k in used or k in BUFFER_KEYS:
            continue
        reason = next((r for p, r in DROPPABLE_PREFIXES.items() if k.startswith(p)), None)
        if reason is None:
            unexpected = sorted(k2 for k2 in src if k2 not in used and k2 not in BUFFER_KEYS and not any(k2.startswith(p) for p in DROPPABLE_PREFIXES))
            raise CheckpointError(f"{where}: tensors with no fairseq RoBERTa counterpart: {unexpected}")
        dropped[k] = reason
    return out, lm_head, untie, dropped, notes


# ----------------------------------------------------------------------------------------------
# writing


def fairseq_checkpoint(model_args: dict, state: Dict[str, torch.Tensor], extra: dict) -> dict:
    """A checkpoint dict shaped like the ones fairseq's trainer writes (``cfg`` as plain containers)."""
    from fairseq.dataclass.configs import FairseqConfig
    from fairseq.tasks.masked_lm import MaskedLMConfig
    from omegaconf import OmegaConf

    cfg = OmegaConf.structured(FairseqConfig())
    OmegaConf.set_struct(cfg, False)
    cfg.task = OmegaConf.structured(MaskedLMConfig())
    cfg.task._name = "masked_lm"
    cfg.task.data = "."
    cfg.task.tokens_per_sample = model_args["tokens_per_sample"]
    cfg.model = model_args
    cfg.criterion = {"_name": "masked_lm"}
    # relative names: a hub loader given no BPE paths fails on a missing local file instead of downloading
    cfg.bpe = {"_name": "gpt2", "gpt2_encoder_json": "encoder.json", "gpt2_vocab_bpe": "vocab.bpe"}
    return {
        "args": None,
        "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        "model": state,
        "optimizer_history": [
            {"criterion_name": "MaskedLmLoss", "optimizer_name": "none", "lr_scheduler_state": {}, "num_updates": 0}
        ],
        "extra_state": dict(extra),
        "last_optimizer_state": None,
    }


def build_fairseq_roberta(dest: str, checkpoint="model.pt"):
    """The DEST model as fairseq's ``RobertaModel`` (for self-checks), eval mode."""
    from argparse import Namespace

    from fairseq.models.roberta.model import RobertaEncoder, RobertaModel, base_architecture

    from ..data.dictionary import load_roberta_dictionary

    state = ku.load_file(os.path.join(dest, checkpoint), "converted checkpoint")
    dictionary = load_roberta_dictionary(os.path.join(dest, "dict.txt"))
    args = Namespace(**state["cfg"]["model"])
    base_architecture(args)
    model = RobertaModel(args, RobertaEncoder(args, dictionary))
    try:
        model.load_state_dict(state["model"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{dest}: converted weights do not fit fairseq's RoBERTa: {e}") from None
    return model.eval(), dictionary


def check_dest(dest, overwrite):
    """Refuse to mix a conversion into another directory's files (checked before any heavy loading)."""
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise ConfigError(f"destination {dest} exists and is not a directory")
    if os.path.isdir(dest) and os.listdir(dest) and not overwrite:
        raise ConfigError(f"destination {dest} is not empty; pass --force to overwrite its files")


def convert_hf_roberta(src, dest, overwrite=False, verify=None, allow_eps_mismatch=False) -> HFConversion:
    """Convert ``src`` (HF RoBERTa dir) into ``dest`` (fairseq RoBERTa dir).

    ``verify``: compare last hidden states with the source model (needs
    ``transformers``); None = when transformers is installed.
    """
    src, dest = os.fspath(src), os.fspath(dest)
    if not os.path.isdir(src):
        raise CheckpointError(f"source directory not found: {src}")
    cfg = read_hf_config(src)
    check_dest(dest, overwrite)
    where = f"{src}"
    act = cfg.get("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise ConfigError(f"{src}/config.json: hidden_act {act!r} has no fairseq equivalent (known: {sorted(ACTIVATIONS)})")
    if cfg.get("pad_token_id", 1) != 1:
        raise ConfigError(f"{src}/config.json: pad_token_id is {cfg['pad_token_id']}; fairseq's dictionary pads with id 1")
    notes = []
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    if eps != FAIRSEQ_LAYER_NORM_EPS:
        msg = (
            f"{src}/config.json: layer_norm_eps is {eps:g} but fairseq's RoBERTa LayerNorms use {FAIRSEQ_LAYER_NORM_EPS:g}; "
            "the converted model's outputs would differ from the source's"
        )
        if not allow_eps_mismatch:
            raise ConfigError(msg + " (pass --allow-eps-mismatch to convert anyway)")
        notes.append(msg)
    vocab, merges, vocab_path = read_hf_vocab(src)
    hf_state = load_hf_state_dict(src)
    state, lm_head, untie, dropped, more_notes = convert_state_dict(hf_state, cfg, where)
    notes.extend(more_notes)
    rows = state[SE + "embed_tokens.weight"].shape[0]
    if cfg.get("vocab_size") not in (None, rows):
        raise CheckpointError(f"{src}: config.json says vocab_size {cfg['vocab_size']} but the embedding has {rows} rows")
    symbols = dictionary_symbols(vocab, rows, vocab_path)
    if cfg.get("type_vocab_size", 1) > 1:
        notes.append("token type ids other than 0 are not representable in fairseq; inputs must use type 0 (RoBERTa's default)")

    model_args = fairseq_model_args(cfg, untie)
    result = HFConversion(source=os.path.abspath(src), dest=os.path.abspath(dest), model_args=model_args, vocab_rows=rows,
                          lm_head=lm_head, dropped=dropped, notes=notes)
    if lm_head.startswith("absent"):
        from fairseq.models.roberta.model import RobertaLMHead

        fresh = RobertaLMHead(model_args["encoder_embed_dim"], rows, model_args["activation_fn"])
        for k, v in fresh.state_dict().items():
            if k != "weight":
                state["encoder.lm_head." + k] = v.detach()

    os.makedirs(dest, exist_ok=True)
    write_bpe_files(dest, vocab, merges)
    write_dict(dest, symbols)
    atomic.torch_save(fairseq_checkpoint(model_args, state, {"conversion": {"source": result.source, "lm_head": lm_head}}),
                      os.path.join(dest, "model.pt"))
    model, dictionary = build_fairseq_roberta(dest)  # strict load: a mapping gap fails here, not in training
    if len(dictionary) != rows:
        raise CheckpointError(f"{dest}: dictionary has {len(dictionary)} entries for {rows} embedding rows")

    if verify is None:
        verify = _transformers_available()
    if verify:
        result.max_abs_diff = max_abs_diff_against_hf(src, model, rows)
    with open(os.path.join(dest, "conversion.json"), "w", encoding="utf-8") as f:
        json.dump(result.to_json(), f, indent=2)
    return result


def _transformers_available():
    try:
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def max_abs_diff_against_hf(src, fairseq_model, rows, length=None, seed=0) -> float:
    """Largest |difference| of the last hidden states of the source and converted models on random ids."""
    from transformers import AutoModel

    hf = AutoModel.from_pretrained(src, local_files_only=True, add_pooling_layer=False).float().eval()
    max_len = fairseq_model.encoder.max_positions()
    length = min(length or 16, max_len)
    g = torch.Generator().manual_seed(seed)
    body = torch.randint(4, rows - 1, (2, length - 2), generator=g)
    ids = torch.cat([torch.zeros(2, 1, dtype=torch.long), body, torch.full((2, 1), 2, dtype=torch.long)], dim=1)
    with torch.no_grad():
        theirs = hf(input_ids=ids).last_hidden_state.float()
        ours, _ = fairseq_model.encoder.extract_features(ids)
    return float((theirs - ours).abs().max())
