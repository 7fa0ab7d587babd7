"""kadapter-convert hf-roberta, and fairseq's own RoBERTa directories as the base.

A tiny Hugging Face RoBERTa is built here with random weights (nothing is
downloaded); the converted directory must give the same hidden states, token
ids and masked-LM scores.
"""
import json
import os
from argparse import Namespace

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the [hf] extra (transformers) is not installed: HF conversion tests need it")

from kadapter_fairseq.convert.cli import main  # noqa: E402
from kadapter_fairseq.convert.hf_roberta import convert_hf_roberta  # noqa: E402
from kadapter_fairseq.errors import CheckpointError, ConfigError  # noqa: E402

MERGES = ["Ġ t", "h e", "Ġt he", "Ġ a", "i n", "Ġ c", "a t"]
TEXTS = ["the cat in the hat", "Hawaii, 1903 (ünïcode) at the sea!", " a  b"]
SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=40)


def write_tiny_bpe(d):
    """A byte-level BPE vocabulary: RoBERTa's specials, all 256 byte symbols, a few merges, <mask> last."""
    from fairseq.data.encoders.gpt2_bpe_utils import bytes_to_unicode

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for ch in sorted(set(bytes_to_unicode().values())):
        vocab[ch] = len(vocab)
    for m in MERGES:
        vocab[m.replace(" ", "")] = len(vocab)
    vocab["<mask>"] = len(vocab)
    with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f)
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(MERGES))  # no trailing newline, as some HF files have
    return vocab


def make_hf_roberta(d, with_lm_head=True, seed=0, safetensors=True, **overrides):
    """Save a random tiny HF RoBERTa (eval mode) into ``d``; returns the model."""
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaModel

    os.makedirs(d, exist_ok=True)
    vocab = write_tiny_bpe(d)
    cfg = RobertaConfig(vocab_size=len(vocab), **{**SIZES, "type_vocab_size": 1, "layer_norm_eps": 1e-5, **overrides})
    torch.manual_seed(seed)
    model = RobertaForMaskedLM(cfg) if with_lm_head else RobertaModel(cfg, add_pooling_layer=True)
    with torch.no_grad():  # far from init, so that a misplaced tensor shows in the outputs
        for name, p in model.named_parameters():
            p.normal_(1.0 if "LayerNorm.weight" in name or "layer_norm.weight" in name else 0.0, 0.3)
    model.eval()
    model.save_pretrained(d)
    if not safetensors:
        os.remove(os.path.join(d, "model.safetensors"))
        torch.save(model.state_dict(), os.path.join(d, "pytorch_model.bin"))
    return model


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("hf_roberta"))
    make_hf_roberta(d)
    return d


@pytest.fixture(scope="module")
def converted(hf_dir, tmp_path_factory):
    dest = str(tmp_path_factory.mktemp("fs_roberta") / "base")
    result = convert_hf_roberta(hf_dir, dest, verify=True)
    return dest, result


def hf_model(d, lm=False):
    from transformers import AutoModel, AutoModelForMaskedLM

    cls = AutoModelForMaskedLM if lm else AutoModel
    return cls.from_pretrained(d, local_files_only=True).float().eval()


def fairseq_hub(dest):
    from fairseq.models.roberta import RobertaModel

    return RobertaModel.from_pretrained(
        dest, checkpoint_file="model.pt", bpe="gpt2",
        gpt2_encoder_json=os.path.join(dest, "encoder.json"), gpt2_vocab_bpe=os.path.join(dest, "vocab.bpe"),
    ).eval()


def random_ids(rows, batch=3, length=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    body = torch.randint(4, rows - 1, (batch, length - 2), generator=g)
    return torch.cat([torch.zeros(batch, 1, dtype=torch.long), body, torch.full((batch, 1), 2, dtype=torch.long)], 1)


# ----------------------------------------------------------------------------------------------


def test_hidden_states_match_source(hf_dir, converted):
    dest, result = converted
    assert sorted(os.listdir(dest)) == ["conversion.json", "dict.txt", "encoder.json", "model.pt", "vocab.bpe"]
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-5
    hub = fairseq_hub(dest)
    ids = random_ids(result.vocab_rows, length=38)  # the full 38 positions of a 40-row HF table
    with torch.no_grad():
        theirs = hf_model(hf_dir)(input_ids=ids).last_hidden_state
        ours = hub.extract_features(ids)
    assert ours.shape == theirs.shape == (3, 38, 32)
    assert (ours - theirs).abs().max().item() <= 1e-5
    assert theirs.abs().mean() > 0.1  # the comparison is not between near-zero tensors


def test_hidden_states_match_with_padding(hf_dir, converted):
    dest, result = converted
    ids = random_ids(result.vocab_rows, batch=2, length=12)
    ids[1, 7:] = 1  # right padding; HF gets the same as an attention mask
    ids[1, 6] = 2
    with torch.no_grad():
        theirs = hf_model(hf_dir)(input_ids=ids, attention_mask=ids.ne(1).long()).last_hidden_state
        ours = fairseq_hub(dest).extract_features(ids)
    keep = ids.ne(1)
    assert (ours[keep] - theirs[keep]).abs().max().item() <= 1e-5


def test_checkpoint_is_weights_only_loadable(converted):
    dest, _ = converted
    path = os.path.join(dest, "model.pt")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["args"] is None and state["cfg"]["model"]["_name"] == "roberta"
    assert state["cfg"]["model"]["max_positions"] == 38  # 40 HF rows = 38 positions + padding_idx + 1


def test_token_indices_are_preserved(hf_dir, converted):
    from transformers import AutoTokenizer

    dest, result = converted
    tok = AutoTokenizer.from_pretrained(hf_dir, local_files_only=True)
    hub = fairseq_hub(dest)
    for text in TEXTS:
        assert hub.encode(text).tolist() == tok(text)["input_ids"], text
    vocab = json.load(open(os.path.join(hf_dir, "vocab.json"), encoding="utf-8"))
    d = hub.task.source_dictionary
    assert len(d) == result.vocab_rows == len(vocab)
    assert d.index("<mask>") == vocab["<mask>"] == len(vocab) - 1
    assert [d[i] for i in range(4)] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert d.index(str(vocab["Ġthe"])) == vocab["Ġthe"]


def test_masked_lm_head_converts(hf_dir, converted):
    dest, result = converted
    assert result.lm_head == "converted"
    ids = random_ids(result.vocab_rows, batch=2, length=10)
    with torch.no_grad():
        theirs = hf_model(hf_dir, lm=True)(input_ids=ids).logits
        ours, _ = fairseq_hub(dest).model(ids)
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() <= 1e-4 * max(1.0, theirs.abs().max().item())


def test_toolkit_loads_converted_base(hf_dir, converted):
    from kadapter_fairseq.convert.fairseq_roberta import check_roberta_dir
    from kadapter_fairseq.hub import KAdapterHub

    dest, result = converted
    assert "2 layers, H=32" in check_roberta_dir(dest).summary
    hub = KAdapterHub.from_pretrained(dest)
    ids = hub.encode(TEXTS[1])
    with torch.no_grad():
        theirs = hf_model(hf_dir)(input_ids=ids[None]).last_hidden_state
    assert (hub.extract_features(ids)["base"] - theirs).abs().max().item() <= 1e-5


def test_bare_model_pytorch_bin_without_lm_head(tmp_path):
    src = str(tmp_path / "hf")
    model = make_hf_roberta(src, with_lm_head=False, safetensors=False, seed=3)
    result = convert_hf_roberta(src, str(tmp_path / "out"), verify=False)
    assert result.lm_head.startswith("absent")
    assert set(result.dropped) == {"pooler.dense.weight", "pooler.dense.bias"}
    info = json.load(open(tmp_path / "out" / "conversion.json"))
    assert info["lm_head"].startswith("absent") and "pooler.dense.weight" in info["dropped_tensors"]
    ids = random_ids(result.vocab_rows, batch=2, length=9)
    with torch.no_grad():
        ours = fairseq_hub(str(tmp_path / "out")).extract_features(ids)
        theirs = model(input_ids=ids).last_hidden_state
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_tokenizer_json_only(tmp_path):
    from transformers import AutoTokenizer

    src = str(tmp_path / "hf")
    make_hf_roberta(src)
    tok = AutoTokenizer.from_pretrained(src, local_files_only=True)
    tok.save_pretrained(str(tmp_path / "tok"))
    os.replace(tmp_path / "tok" / "tokenizer.json", os.path.join(src, "tokenizer.json"))
    os.remove(os.path.join(src, "vocab.json"))
    os.remove(os.path.join(src, "merges.txt"))
    convert_hf_roberta(src, str(tmp_path / "out"), verify=False)
    hub = fairseq_hub(str(tmp_path / "out"))
    for text in TEXTS:
        assert hub.encode(text).tolist() == tok(text)["input_ids"], text


def test_type_vocab_two_folds_row_zero(tmp_path):
    src = str(tmp_path / "hf")
    model = make_hf_roberta(src, seed=4)
    cfg = json.load(open(os.path.join(src, "config.json")))
    from transformers import RobertaConfig, RobertaForMaskedLM

    cfg2 = RobertaConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "transformers_version")})
    cfg2.type_vocab_size = 2
    m2 = RobertaForMaskedLM(cfg2)
    sd = model.state_dict()
    sd["roberta.embeddings.token_type_embeddings.weight"] = torch.randn(2, 32)
    m2.load_state_dict(sd, strict=False)
    m2.eval().save_pretrained(src)
    result = convert_hf_roberta(src, str(tmp_path / "out"), verify=True)
    assert result.max_abs_diff <= 1e-5
    assert any("row 0" in n for n in result.notes)


# ---------------------------------------------------------------------------------------------- bad input


def test_truncated_weights_file(tmp_path):
    for safe in (True, False):
        src = str(tmp_path / f"hf{safe}")
        make_hf_roberta(src, safetensors=safe)
        weights = os.path.join(src, "model.safetensors" if safe else "pytorch_model.bin")
        data = open(weights, "rb").read()
        open(weights, "wb").write(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match="truncated") as e:
            convert_hf_roberta(src, str(tmp_path / f"out{safe}"), verify=False)
        assert weights in str(e.value)
        assert not os.path.exists(tmp_path / f"out{safe}" / "model.pt")


def test_missing_tensor_is_listed(tmp_path):
    src = str(tmp_path / "hf")
    model = make_hf_roberta(src, safetensors=False)
    sd = model.state_dict()
    del sd["roberta.encoder.layer.1.attention.self.key.bias"]
    torch.save(sd, os.path.join(src, "pytorch_model.bin"))
    with pytest.raises(CheckpointError, match=r"lack 1 RoBERTa tensor.*encoder\.layer\.1\.attention\.self\.key\.bias"):
        convert_hf_roberta(src, str(tmp_path / "out"), verify=False)


def test_unexpected_tensor_is_listed(tmp_path):
    src = str(tmp_path / "hf")
    model = make_hf_roberta(src, safetensors=False)
    sd = model.state_dict()
    sd["roberta.encoder.layer.0.adapter.weight"] = torch.zeros(3)
    torch.save(sd, os.path.join(src, "pytorch_model.bin"))
    with pytest.raises(CheckpointError, match=r"no fairseq RoBERTa counterpart.*encoder\.layer\.0\.adapter\.weight"):
        convert_hf_roberta(src, str(tmp_path / "out"), verify=False)


def test_shape_mismatch_with_config(tmp_path):
    src = str(tmp_path / "hf")
    make_hf_roberta(src)
    cfg_path = os.path.join(src, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["intermediate_size"] = 48
    json.dump(cfg, open(cfg_path, "w"))
    with pytest.raises(CheckpointError, match=r"intermediate\.dense\.weight \(64, 32\) \(expected \(48, 32\)\)"):
        convert_hf_roberta(src, str(tmp_path / "out"), verify=False)


def test_config_that_is_not_roberta(tmp_path):
    src = str(tmp_path / "hf")
    make_hf_roberta(src)
    cfg_path = os.path.join(src, "config.json")
    cfg = json.load(open(cfg_path))
    cfg.update(model_type="bert", architectures=["BertForMaskedLM"])
    json.dump(cfg, open(cfg_path, "w"))
    with pytest.raises(ConfigError, match=r"config\.json: model_type is 'bert' \(BertForMaskedLM\), not 'roberta'"):
        convert_hf_roberta(src, str(tmp_path / "out"), verify=False)


def test_special_tokens_that_cannot_keep_their_index(tmp_path):
    src = str(tmp_path / "hf")
    make_hf_roberta(src)
    vocab = json.load(open(os.path.join(src, "vocab.json")))
    vocab["<s>"], vocab["<unk>"] = vocab["<unk>"], vocab["<s>"]
    json.dump(vocab, open(os.path.join(src, "vocab.json"), "w"))
    with pytest.raises(ConfigError, match=r"id 0 is '<unk>' \(fairseq needs '<s>'\)"):
        convert_hf_roberta(src, str(tmp_path / "out"), verify=False)


def test_layer_norm_eps_mismatch(tmp_path):
    src = str(tmp_path / "hf")
    make_hf_roberta(src, layer_norm_eps=1e-12)
    with pytest.raises(ConfigError, match="layer_norm_eps is 1e-12.*--allow-eps-mismatch"):
        convert_hf_roberta(src, str(tmp_path / "out"), verify=False)
    result = convert_hf_roberta(src, str(tmp_path / "out"), verify=False, allow_eps_mismatch=True)
    assert any("1e-12" in n for n in result.notes)


def test_cli(hf_dir, tmp_path, capsys):
    assert main(["hf-roberta", hf_dir, str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "2 layers, H=32" in out and "verified: max |hidden state difference|" in out
    assert main(["hf-roberta", hf_dir, str(tmp_path / "out")]) == 2  # not empty, no --force
    assert "not empty; pass --force" in capsys.readouterr().err
    assert main(["hf-roberta", str(tmp_path / "nowhere"), str(tmp_path / "out2")]) == 2
    assert "source directory not found" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- fairseq's own dirs


@pytest.fixture
def released_style_dir(converted, tmp_path):
    """A roberta.large-style directory: Namespace config, 'decoder.*' keys, dict.txt, no BPE files."""
    from fairseq import options

    dest, _ = converted
    state = torch.load(os.path.join(dest, "model.pt"), weights_only=True)
    m = state["cfg"]["model"]
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        ".", "--task", "masked_lm", "--arch", "roberta", "--criterion", "masked_lm",
        "--encoder-layers", str(m["encoder_layers"]), "--encoder-embed-dim", str(m["encoder_embed_dim"]),
        "--encoder-attention-heads", str(m["encoder_attention_heads"]), "--encoder-ffn-embed-dim", str(m["encoder_ffn_embed_dim"]),
        "--max-positions", str(m["max_positions"]), "--tokens-per-sample", str(m["max_positions"]),
    ])
    released = tmp_path / "roberta.tiny"
    released.mkdir()
    model = {"decoder." + k[len("encoder."):]: v for k, v in state["model"].items()}
    torch.save({"args": args, "model": model, "optimizer_history": [{"criterion_name": "MaskedLmLoss", "optimizer_name": "FairseqAdam",
                "lr_scheduler_state": {"best": 1.5}, "num_updates": 10}], "extra_state": {"epoch": 1}}, released / "model.pt")
    (released / "dict.txt").write_text(open(os.path.join(dest, "dict.txt")).read())
    assert isinstance(args, Namespace)
    return str(released), dest


def test_released_dir_without_bpe_files_is_a_clear_error(released_style_dir):
    from kadapter_fairseq.convert.fairseq_roberta import check_roberta_dir

    released, _ = released_style_dir
    with pytest.raises(ConfigError, match="encoder.json.*vocab.bpe.*--gpt2-encoder-json"):
        check_roberta_dir(released)
    os.remove(os.path.join(released, "dict.txt"))
    with pytest.raises(ConfigError, match=r"dictionary not found: .*roberta\.tiny/dict\.txt"):
        check_roberta_dir(released)


def test_released_dir_repacks_and_loads(released_style_dir, tmp_path, capsys):
    from kadapter_fairseq.convert.fairseq_roberta import check_roberta_dir

    released, converted_dir = released_style_dir
    bpe = ["--gpt2-encoder-json", os.path.join(converted_dir, "encoder.json"), "--gpt2-vocab-bpe", os.path.join(converted_dir, "vocab.bpe")]
    check = check_roberta_dir(released, gpt2_encoder_json=bpe[1], gpt2_vocab_bpe=bpe[3])
    assert any("argparse.Namespace" in n for n in check.notes) and any("decoder" in n for n in check.notes)
    assert main(["check-base", released] + bpe) == 0
    assert main(["fairseq-roberta", released, str(tmp_path / "repacked")] + bpe) == 0
    assert "2 layers, H=32" in capsys.readouterr().out
    path = str(tmp_path / "repacked" / "model.pt")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    ids = random_ids(265, batch=2, length=11)
    with torch.no_grad():
        a = fairseq_hub(str(tmp_path / "repacked")).extract_features(ids)
        b = fairseq_hub(converted_dir).extract_features(ids)
    assert torch.equal(a, b)
