"""The roberta_kadapter model: shapes, freezing, fusion arithmetic, masking, checkpoints."""
import os
import shutil

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

import kadapter_fairseq  # noqa: F401  (registers the model)
from kadapter_fairseq.checkpoint_utils import load_adapter_file
from kadapter_fairseq.errors import CheckpointError, ConfigError
from kadapter_fairseq.hub import KAdapterHub, load_base_dictionary
from kadapter_fairseq.models.roberta_kadapter import RobertaKAdapterConfig, RobertaKAdapterModel
from kadapter_fairseq.modules.adapter import AdapterArchConfig, KnowledgeAdapter, count_adapter_parameters
from model_helpers import build


def batch(model, lengths=(7, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    d = model.encoder.dictionary
    rows = []
    for n in lengths:
        body = torch.randint(d.nspecial, len(d) - 1, (n - 2,), generator=g)
        rows.append(torch.cat([torch.tensor([d.bos()]), body, torch.tensor([d.eos()])]))
    out = torch.full((len(rows), max(lengths)), d.pad(), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def test_shapes(tiny_base):
    model = build(tiny_base).eval()
    tokens = batch(model)
    fused, extra = model(tokens, features_only=True)
    assert fused.shape == (2, 7, 32)
    assert extra["base"].shape == (2, 7, 32)
    assert set(extra["adapters"]) == {"fac", "lin"}
    assert all(a.shape == (2, 7, 32) for a in extra["adapters"].values())
    model.register_kadapter_head("rel", "span_pair", num_classes=5)
    logits, _ = model(tokens, classification_head_name="rel", positions=torch.tensor([[1, 3], [2, 1]]))
    assert logits.shape == (2, 5)


def test_one_base_pass_serves_all_adapters(tiny_base):
    model = build(tiny_base).eval()
    calls = []
    model.encoder.sentence_encoder.register_forward_hook(lambda *a: calls.append(1))
    model(batch(model), features_only=True)
    assert len(calls) == 1


def test_base_frozen_bit_identical_after_training(tiny_base):
    model = build(tiny_base, train_phase="knowledge")
    model.register_kadapter_head("rel", "span_pair", num_classes=3)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    adapters_before = {k: v.clone() for k, v in model.adapters.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.1)
    model.train()
    assert not model.encoder.training, "a frozen base stays in eval mode (no dropout)"
    tokens = batch(model)
    for step in range(4):
        logits, _ = model(tokens, classification_head_name="rel", positions=torch.tensor([[1, 2], [3, 1]]))
        loss = F.cross_entropy(logits, torch.tensor([0, 2]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.encoder.parameters())
    changed = [k for k, v in model.adapters.state_dict().items() if not torch.equal(v, adapters_before[k])]
    assert changed, "the adapters must learn"


@pytest.mark.parametrize(
    "phase,base,adapters",
    [("knowledge", False, True), ("finetune", True, False), ("efficient", False, False), ("full", True, True)],
)
def test_train_phases(tiny_base, phase, base, adapters):
    model = build(tiny_base, train_phase=phase)
    model.register_kadapter_head("h", "sentence", num_classes=2)
    assert all(p.requires_grad == base for p in model.encoder.parameters())
    assert all(p.requires_grad == adapters for p in model.adapters.parameters())
    assert all(p.requires_grad for p in model.fusion.parameters())
    assert all(p.requires_grad for p in model.heads.parameters())


def test_zero_up_projection_is_identity(tiny_base):
    model = build(tiny_base, adapter_names="fac", adapter_plug_layers="3").eval()
    with torch.no_grad():
        for layer in model.adapters["fac"].layers:
            layer.up_proj.weight.zero_()
            layer.up_proj.bias.zero_()
    tokens = batch(model)
    _, extra = model(tokens, features_only=True)
    # a single layer plugged at the last base layer, with a zero up-projection, returns h_L itself
    assert torch.equal(extra["adapters"]["fac"], extra["base"])


def test_add_fusion_matches_hand_computation(tiny_base):
    model = build(tiny_base, adapter_fusion="add").eval()
    tokens = batch(model)
    fused, extra = model(tokens, features_only=True)
    inner = [h.transpose(0, 1) for h in extra["inner_states"]]
    expected = inner[-1] + extra["adapters"]["fac"] + extra["adapters"]["lin"]
    assert torch.allclose(fused, expected, atol=1e-6)
    # and the adapter chain itself: x_k = h[p_k] + a_{k-1}, a_k = x_k + up(enc(down(x_k)))
    adapter = model.adapters["fac"]
    prev = torch.zeros_like(inner[0])
    mask = tokens.eq(model.padding_idx)
    for plug, layer in zip(adapter.cfg.plug_layers, adapter.layers):
        x = inner[plug] + prev
        y = layer.down_proj(x).transpose(0, 1)
        for enc in layer.encoder:
            y = enc(y, encoder_padding_mask=mask)
        prev = x + layer.up_proj(y.transpose(0, 1))
    assert torch.allclose(prev, extra["adapters"]["fac"], atol=1e-6)


def test_concat_fusion_matches_hand_computation(tiny_base):
    model = build(tiny_base, adapter_fusion="concat").eval()
    fused, extra = model(batch(model), features_only=True)
    h = extra["base"]
    fus = model.fusion
    f_fac = torch.cat([h, extra["adapters"]["fac"]], -1) @ fus.proj["fac"].weight.T + fus.proj["fac"].bias
    f_lin = torch.cat([h, extra["adapters"]["lin"]], -1) @ fus.proj["lin"].weight.T + fus.proj["lin"].bias
    expected = torch.cat([f_fac, f_lin], -1) @ fus.combine.weight.T + fus.combine.bias
    assert torch.allclose(fused, expected, atol=1e-5)
    single = build(tiny_base, adapter_names="fac").eval()
    fused1, extra1 = single(batch(single), features_only=True)
    p = single.fusion.proj["fac"]
    assert single.fusion.combine is None
    assert torch.allclose(fused1, torch.cat([extra1["base"], extra1["adapters"]["fac"]], -1) @ p.weight.T + p.bias, atol=1e-5)


def test_concat_input_fusion_starts_as_add(tiny_base):
    add = build(tiny_base, adapter_input_fusion="add").eval()
    cat = build(tiny_base, adapter_input_fusion="concat").eval()
    # same adapter weights apart from the [I | I] input projection
    missing = cat.adapters.load_state_dict(add.adapters.state_dict(), strict=False).missing_keys
    assert missing and all(".input_proj." in k for k in missing)
    tokens = batch(add)
    _, ea = add(tokens, features_only=True)
    _, ec = cat(tokens, features_only=True)
    assert torch.allclose(ea["adapters"]["fac"], ec["adapters"]["fac"], atol=1e-5)


def _real_token_outputs(model, lengths):
    tokens = batch(model, lengths)
    fused, extra = model(tokens, features_only=True)
    n = lengths[0]
    return fused[0, :n], extra["adapters"]["fac"][0, :n]


def test_padding_never_changes_real_tokens(tiny_base):
    model = build(tiny_base, adapter_mask_padding=True).eval()
    alone = _real_token_outputs(model, (5,))
    padded = _real_token_outputs(model, (5, 9))
    for a, b in zip(alone, padded):
        assert torch.allclose(a, b, atol=1e-5)
    # the released behaviour (no mask) lets padding leak in: the switch really changes something
    unmasked = build(tiny_base, adapter_mask_padding=False).eval()
    a = _real_token_outputs(unmasked, (5,))[1]
    b = _real_token_outputs(unmasked, (5, 9))[1]
    assert not torch.allclose(a, b, atol=1e-5)


def test_save_load_round_trip(tiny_base, tmp_path):
    model = build(tiny_base, train_phase="knowledge")
    model.register_kadapter_head("rel", "span_pair", num_classes=4)
    with torch.no_grad():  # move away from the init so that a failed load would show
        for p in list(model.adapters.parameters()) + list(model.fusion.parameters()):
            p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    path = tmp_path / "both.pt"
    model.save_adapters(path, include_fusion=True, include_heads=True)
    state = load_adapter_file(path)
    assert set(state["adapters"]) == {"fac", "lin"} and state["base_fingerprint"]["weights"]
    fresh = build(tiny_base, train_phase="knowledge")
    fresh.load_adapters(path)
    fresh.eval()
    tokens = batch(model)
    pos = torch.tensor([[1, 2], [2, 3]])
    a, _ = model(tokens, classification_head_name="rel", positions=pos)
    b, _ = fresh(tokens, classification_head_name="rel", positions=pos)
    assert torch.equal(a, b)
    # by path, as the hub and model.adapter_paths do
    model.save_adapters(tmp_path / "fac.pt", names=["fac"], include_fusion=True)
    by_path = build(tiny_base, adapter_names="fac", adapter_paths=f"fac={tmp_path / 'fac.pt'}").eval()
    one = build(tiny_base, adapter_names="fac").eval()
    one.adapters["fac"].load_state_dict(model.adapters["fac"].state_dict())
    one.fusion.proj["fac"].load_state_dict(model.fusion.proj["fac"].state_dict())
    assert torch.equal(by_path(tokens, features_only=True)[0], one(tokens, features_only=True)[0])


def test_hub_round_trip_and_features(tiny_base, tmp_path):
    model = build(tiny_base, adapter_names="fac")
    model.save_adapters(tmp_path / "fac.pt", include_fusion=True)
    hub = KAdapterHub.from_pretrained(tiny_base, adapters={"fac": str(tmp_path / "fac.pt")}, arch="roberta_kadapter_tiny")
    tokens = hub.encode("Obama was born in Hawaii .")
    assert tokens[0] == 0 and tokens[-1] == 2
    out = hub.extract_features(tokens)
    assert out["base"].shape == out["fused"].shape == out["adapters"]["fac"].shape == (1, len(tokens), 32)
    model.eval()
    assert torch.equal(out["fused"], model(tokens.unsqueeze(0), features_only=True)[0])


def test_loading_onto_another_base_fails(tiny_base, other_tiny_base, tmp_path):
    model = build(tiny_base, adapter_names="fac")
    model.save_adapters(tmp_path / "fac.pt")
    other = build(other_tiny_base, adapter_names="fac")
    with pytest.raises(CheckpointError) as e:
        other.load_adapters(tmp_path / "fac.pt")
    mine, theirs = model.base_fingerprint["weights"][:12], other.base_fingerprint["weights"][:12]
    assert mine in str(e.value) and theirs in str(e.value) and "different base" in str(e.value)
    with pytest.raises(CheckpointError, match="different base"):
        build(other_tiny_base, adapter_names="fac", adapter_paths=f"fac={tmp_path / 'fac.pt'}")
    # full fairseq-style state dicts carry the fingerprint too
    with pytest.raises(CheckpointError, match="different base"):
        other.load_state_dict(model.state_dict())


def test_bad_checkpoints(tiny_base, tmp_path):
    model = build(tiny_base, adapter_names="fac")
    model.save_adapters(tmp_path / "fac.pt")
    data = (tmp_path / "fac.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        model.load_adapters(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="not found"):
        model.load_adapters(tmp_path / "missing.pt")
    torch.save({"adapter.0.down_project.weight": torch.zeros(1)}, tmp_path / "released.pt")
    with pytest.raises(CheckpointError, match="kadapter-convert"):
        model.load_adapters(tmp_path / "released.pt")
    with pytest.raises(ConfigError, match="plug-in layers \\[22\\]"):
        build(tiny_base, adapter_plug_layers="0,1,22")
    cfg = OmegaConf.structured(RobertaKAdapterConfig(roberta_path=str(tmp_path / "nowhere")))
    with pytest.raises(ConfigError, match="roberta_path: base checkpoint not found"):
        RobertaKAdapterModel.from_base(cfg, load_base_dictionary(tiny_base))
    with pytest.raises(ConfigError, match="base checkpoint not found"):
        KAdapterHub.from_pretrained(str(tmp_path))
    (tmp_path / "no_dict").mkdir()
    shutil.copy(os.path.join(tiny_base, "model.pt"), tmp_path / "no_dict")
    with pytest.raises(ConfigError, match="dict.txt"):
        KAdapterHub.from_pretrained(str(tmp_path / "no_dict"))


def test_large_adapter_parameter_count_without_allocation():
    cfg = AdapterArchConfig()  # the paper's sizes: H=1024, 768 wide, 2 layers, plugged at 0,11,22
    assert cfg.plug_layers == [0, 11, 22]
    per_layer = count_adapter_parameters(AdapterArchConfig(plug_layers=[0]))
    assert per_layer == 15_750_400
    assert count_adapter_parameters(cfg) == 47_251_200
    with torch.device("meta"):
        assert all(p.is_meta for p in KnowledgeAdapter(cfg).parameters())


def test_fp16_rejected_on_cpu(tiny_base):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: fp16 is allowed")
    model = build(tiny_base, adapter_names="fac")
    with pytest.raises(ConfigError, match="bf16"):
        model.half()


def test_arch_defaults_apply_after_hydra_merged_the_dataclass_defaults(tiny_base):
    from fairseq.dataclass.utils import merge_with_parent

    from kadapter_fairseq.models.roberta_kadapter import apply_arch_defaults

    # what fairseq-hydra-train's add_defaults produces for `model: {_name: roberta_kadapter_tiny, ...}`
    yaml = OmegaConf.create({"_name": "roberta_kadapter_tiny", "roberta_path": tiny_base, "adapter_heads": 4})
    cfg = merge_with_parent(RobertaKAdapterConfig(), yaml)
    assert cfg.adapter_plug_layers == "0,11,22"
    apply_arch_defaults(cfg)
    assert cfg.adapter_plug_layers == "0,1,2" and cfg.adapter_down_dim == 32
    assert cfg.adapter_heads == 4, "an explicit override wins over the arch default"
    assert cfg.adapter_layers == 1


def test_base_checkpoint_with_namespace_model_config(tiny_base, tmp_path):
    """fairseq-train keeps a legacy arch's cfg.model as an argparse.Namespace; such a base loads
    (under torch's weights_only default, through the package's narrow allow-list)."""
    from argparse import Namespace

    state = torch.load(os.path.join(tiny_base, "model.pt"))
    state["cfg"]["model"] = Namespace(**state["cfg"]["model"])
    os.makedirs(tmp_path / "base")
    torch.save(state, tmp_path / "base" / "model.pt")
    for name in ("dict.txt", "sentencepiece.bpe.model"):
        shutil.copy(os.path.join(tiny_base, name), tmp_path / "base")
    model = build(str(tmp_path / "base")).eval()
    reference = build(tiny_base).eval()
    tokens = batch(model)
    assert torch.equal(model(tokens, features_only=True)[0], reference(tokens, features_only=True)[0])


def test_model_builds_from_a_plain_dict_config(tiny_base):
    """Python callers (the benchmark, notebooks) build models without OmegaConf: a dict names only what it changes."""
    from kadapter_fairseq.models.roberta_kadapter import apply_arch_defaults

    cfg = {"_name": "roberta_kadapter_tiny", "roberta_path": tiny_base, "adapter_names": "fac", "adapter_heads": 4}
    apply_arch_defaults(cfg)
    assert cfg["adapter_plug_layers"] == "0,1,2" and cfg["adapter_down_dim"] == 32 and cfg["adapter_layers"] == 1
    assert cfg["adapter_heads"] == 4, "an explicit value wins over the arch default"
    assert cfg["train_phase"] == "knowledge", "fields the dict leaves out take the dataclass default"
    model = RobertaKAdapterModel.from_base(cfg, load_base_dictionary(tiny_base)).eval()
    assert model.adapters["fac"].cfg.plug_layers == [0, 1, 2] and model.adapters["fac"].cfg.down_dim == 32
    features, _ = model.extract_features(batch(model))
    assert features.shape == (2, 7, model.hidden_dim)
