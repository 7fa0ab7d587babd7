"""kadapter-convert kadapter-adapter: knowledge adapters in the authors' release layout.

The reference is the released network written out in plain torch (BERT layer
math over the base's hidden states, add input fusion, no padding mask), run on
the source Hugging Face RoBERTa's hidden states; the converted adapter runs
inside this toolkit on the converted base.
"""
import math

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers", reason="the [hf] extra (transformers) is not installed: the reference base is a HF RoBERTa")

from test_convert_hf import converted, hf_dir, hf_model, random_ids  # noqa: E402,F401  (shared fixtures)

from kadapter_fairseq.convert.cli import main  # noqa: E402
from kadapter_fairseq.convert.released_adapter import convert_released_adapter  # noqa: E402
from kadapter_fairseq.errors import CheckpointError, ConfigError  # noqa: E402

PLUG = [0, 1, 2]  # the tiny base has 2 layers: hidden states 0 (embeddings), 1, 2
SIZES = dict(hidden=32, down=16, ffn=24, layers=2, heads=4)
BERT_LAYER = {
    "attention.self.query": "hh", "attention.self.key": "hh", "attention.self.value": "hh",
    "attention.output.dense": "hh", "attention.output.LayerNorm": "ln", "intermediate.dense": "fh",
    "output.dense": "hf", "output.LayerNorm": "ln",
}


def released_state(seed=0, hidden=32, down=16, ffn=24, layers=2, n_adapter=3, heads_tensors=True, **_):
    """A random adapter state dict in the release's layout (plus pre-training head tensors)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, mean=0.0):
        # weights ~ 1/sqrt(fan_in): outputs move well away from the input without float32 blow-up
        std = 0.1 if len(shape) == 1 else 1.0 / math.sqrt(shape[1])
        return mean + std * torch.randn(*shape, generator=g)

    sd = {}
    for i in range(n_adapter):
        a = f"adapter.{i}."
        sd[a + "down_project.weight"], sd[a + "down_project.bias"] = rand(down, hidden), rand(down)
        sd[a + "up_project.weight"], sd[a + "up_project.bias"] = rand(hidden, down), rand(hidden)
        for j in range(layers):
            for mod, kind in BERT_LAYER.items():
                p = f"{a}encoder.layer.{j}.{mod}."
                if kind == "ln":
                    sd[p + "weight"], sd[p + "bias"] = rand(down, mean=1.0), rand(down)
                else:
                    out_dim = ffn if kind == "fh" else down
                    in_dim = ffn if kind == "hf" else down
                    sd[p + "weight"], sd[p + "bias"] = rand(out_dim, in_dim), rand(out_dim)
    if heads_tensors:  # the relation-classification head the release trains alongside
        sd["com_dense.weight"], sd["com_dense.bias"] = rand(hidden, 2 * hidden), rand(hidden)
        sd["out_proj.weight"], sd["out_proj.bias"] = rand(5, hidden), rand(5)
    return sd


# ---------------------------------------------------------------------------------------------- reference


def linear(x, sd, name):
    return F.linear(x, sd[name + ".weight"], sd[name + ".bias"])


def layer_norm(x, sd, name, eps):
    return F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], eps)


def bert_layer(x, sd, p, heads, eps):
    B, T, D = x.shape
    dh = D // heads

    def split(t):
        return t.view(B, T, heads, dh).transpose(1, 2)

    q, k, v = (split(linear(x, sd, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
    probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)  # no mask, as released
    ctx = (probs @ v).transpose(1, 2).reshape(B, T, D)
    a = layer_norm(x + linear(ctx, sd, p + "attention.output.dense"), sd, p + "attention.output.LayerNorm", eps)
    inner = 0.5 * (y := linear(a, sd, p + "intermediate.dense")) * (1.0 + torch.erf(y / math.sqrt(2.0)))
    return layer_norm(a + linear(inner, sd, p + "output.dense"), sd, p + "output.LayerNorm", eps)


def released_adapter_output(hidden_states, sd, plug, heads, eps=1e-5, layers=2):
    """x_k = h[p_k] + a_{k-1}; a_k = x_k + up(encoder(down(x_k)))."""
    out = torch.zeros_like(hidden_states[0])
    for k, p in enumerate(plug):
        x = hidden_states[p] + out
        y = linear(x, sd, f"adapter.{k}.down_project")
        for j in range(layers):
            y = bert_layer(y, sd, f"adapter.{k}.encoder.layer.{j}.", heads, eps)
        out = x + linear(y, sd, f"adapter.{k}.up_project")
    return out


# ---------------------------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def released_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("released")
    paths = {}
    for name, seed in (("fac", 0), ("lin", 1)):
        (d / f"{name}-adapter").mkdir()
        paths[name] = str(d / f"{name}-adapter" / "pytorch_model.bin")
        torch.save(released_state(seed), paths[name])
    return paths


def test_converted_adapters_match_the_released_network(hf_dir, converted, released_files, tmp_path):
    from kadapter_fairseq.hub import KAdapterHub

    base, result = converted
    outs = {}
    for name, ckpt in released_files.items():
        outs[name] = str(tmp_path / f"{name}.pt")
        conv = convert_released_adapter(ckpt, outs[name], PLUG, heads=4, base=base)
        assert conv.name == name  # guessed from the release's folder name
        assert conv.arch["mask_padding"] is False and conv.arch["input_fusion"] == "add"
        assert (conv.arch["down_dim"], conv.arch["num_layers"], conv.arch["ffn_dim"], conv.arch["heads"]) == (16, 2, 24, 4)
        assert conv.skipped == ["com_dense.bias", "com_dense.weight", "out_proj.bias", "out_proj.weight"]
    hub = KAdapterHub.from_pretrained(base, adapters=outs)
    ids = random_ids(result.vocab_rows, batch=3, length=17, seed=5)
    with torch.no_grad():
        hidden = hf_model(hf_dir)(input_ids=ids, output_hidden_states=True).hidden_states
        ours = hub.extract_features(ids)["adapters"]
    for name, ckpt in released_files.items():
        ref = released_adapter_output(hidden, torch.load(ckpt, weights_only=True), PLUG, heads=4)
        assert ours[name].shape == ref.shape == (3, 17, 32)
        assert (ours[name] - ref).abs().max().item() <= 1e-5, name
        assert (ref - hidden[-1]).abs().mean() > 0.1  # the adapters do change the features
    assert (ours["fac"] - ours["lin"]).abs().max() > 0.1


def test_same_network_exactly_in_float64(tmp_path):
    """In float64 the converted module and the reference agree to rounding: the float32 gap is numerics only.

    fairseq's gelu evaluates in float32 whatever the input dtype, so it is swapped for the exact one here.
    """
    from kadapter_fairseq.checkpoint_utils import load_adapter_file
    from kadapter_fairseq.modules.adapter import KnowledgeAdapter

    sd = released_state(seed=7)
    src = tmp_path / "a.bin"
    torch.save(sd, src)
    convert_released_adapter(src, tmp_path / "a.pt", PLUG, heads=4)
    arch, state = load_adapter_file(tmp_path / "a.pt")["adapters"]["adapter"]
    module = KnowledgeAdapter(arch).double().eval()
    module.load_state_dict({k: v.double() for k, v in state.items()})
    for layer in module.layers:
        for inner in layer.encoder:
            inner.activation_fn = F.gelu
    g = torch.Generator().manual_seed(8)
    hidden = [torch.randn(2, 13, 32, generator=g, dtype=torch.float64) for _ in range(3)]
    with torch.no_grad():
        ours = module([h.transpose(0, 1) for h in hidden]).transpose(0, 1)
    ref = released_adapter_output(hidden, {k: v.double() for k, v in sd.items()}, PLUG, heads=4)
    assert (ours - ref).abs().max().item() <= 1e-12


def test_reference_is_sensitive_to_heads(hf_dir, converted, released_files, tmp_path):
    """Heads cannot be read from shapes: a wrong --adapter-heads gives different outputs."""
    from kadapter_fairseq.hub import KAdapterHub

    base, result = converted
    out = str(tmp_path / "fac2.pt")
    convert_released_adapter(released_files["fac"], out, PLUG, heads=2)
    ids = random_ids(result.vocab_rows, batch=1, length=9, seed=6)
    with torch.no_grad():
        hidden = hf_model(hf_dir)(input_ids=ids, output_hidden_states=True).hidden_states
        ours = KAdapterHub.from_pretrained(base, adapters={"fac": out}).extract_features(ids)["adapters"]["fac"]
    ref = released_adapter_output(hidden, torch.load(released_files["fac"], weights_only=True), PLUG, heads=4)
    assert (ours - ref).abs().max().item() > 1e-3


def test_cli_and_data_parallel_prefix(released_files, tmp_path, capsys):
    sd = {"module." + k: v for k, v in torch.load(released_files["lin"], weights_only=True).items()}
    src = str(tmp_path / "dp.bin")
    torch.save(sd, src)
    out = str(tmp_path / "lin.pt")
    assert main(["kadapter-adapter", src, out, "--layers", "0,1,2", "--adapter-heads", "4", "--name", "lin"]) == 0
    text = capsys.readouterr().out
    assert "adapter 'lin'" in text and "skipped 4 pre-training head tensor(s)" in text
    from kadapter_fairseq.checkpoint_utils import load_adapter_file

    arch, state = load_adapter_file(out)["adapters"]["lin"]
    assert arch.plug_layers == [0, 1, 2] and arch.layer_norm_eps == 1e-5
    assert torch.equal(state["layers.2.encoder.1.self_attn.k_proj.weight"], sd["module.adapter.2.encoder.layer.1.attention.self.key.weight"])
    assert main(["kadapter-adapter", src, out, "--layers", "0,1,2", "--adapter-heads", "4"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- bad checkpoints


def test_truncated_checkpoint(released_files, tmp_path):
    data = open(released_files["fac"], "rb").read()
    bad = tmp_path / "truncated.bin"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated") as e:
        convert_released_adapter(bad, tmp_path / "out.pt", PLUG, heads=4)
    assert str(bad) in str(e.value)
    assert not (tmp_path / "out.pt").exists()


def test_missing_and_unexpected_tensors_are_listed(tmp_path):
    sd = released_state()
    del sd["adapter.1.encoder.layer.0.attention.self.key.bias"]
    del sd["adapter.2.up_project.weight"]
    sd["adapter.0.encoder.layer.1.crossattention.self.query.weight"] = torch.zeros(16, 16)
    src = tmp_path / "bad.bin"
    torch.save(sd, src)
    with pytest.raises(CheckpointError) as e:
        convert_released_adapter(src, tmp_path / "out.pt", PLUG, heads=4)
    msg = str(e.value)
    assert "missing 2 tensor(s): ['adapter.1.encoder.layer.0.attention.self.key.bias', 'adapter.2.up_project.weight']" in msg
    assert "unexpected 1 tensor(s): ['adapter.0.encoder.layer.1.crossattention.self.query.weight']" in msg
    assert not (tmp_path / "out.pt").exists()


def test_inconsistent_shapes_inside_the_adapter(tmp_path):
    sd = released_state()
    sd["adapter.2.encoder.layer.1.output.dense.weight"] = torch.zeros(16, 20)
    src = tmp_path / "bad.bin"
    torch.save(sd, src)
    with pytest.raises(CheckpointError, match=r"shape mismatch: \['adapter\.2\.encoder\.layer\.1\.output\.dense\.weight \(16, 20\) \(expected \(16, 24\)\)'\]"):
        convert_released_adapter(src, tmp_path / "out.pt", PLUG, heads=4)


def test_shape_mismatch_with_the_base(converted, tmp_path):
    from kadapter_fairseq.hub import KAdapterHub

    base, _ = converted
    src = tmp_path / "wide.bin"
    torch.save(released_state(hidden=48), src)
    with pytest.raises(ConfigError, match="adapter width H=48 does not match the base's hidden size 32"):
        convert_released_adapter(src, tmp_path / "checked.pt", PLUG, heads=4, base=base)
    assert not (tmp_path / "checked.pt").exists()
    convert_released_adapter(src, tmp_path / "unchecked.pt", PLUG, heads=4)  # no --base: caught at load time
    with pytest.raises(ConfigError, match="adapter width H=48 does not match the base's hidden size 32"):
        KAdapterHub.from_pretrained(base, adapters={"fac": str(tmp_path / "unchecked.pt")})


def test_plug_layers_that_do_not_fit(converted, tmp_path):
    base, _ = converted
    src = tmp_path / "a.bin"
    torch.save(released_state(), src)
    with pytest.raises(ConfigError, match=r"has 3 adapter layers but --layers gives 2 plug-in points \[0, 11\]"):
        convert_released_adapter(src, tmp_path / "out.pt", [0, 11], heads=4)
    with pytest.raises(ConfigError, match=r"plug-in layers \[11, 22\] do not exist in a 2-layer base"):
        convert_released_adapter(src, tmp_path / "out.pt", [0, 11, 22], heads=4, base=base)
    with pytest.raises(ConfigError, match="width 16 is not divisible by --adapter-heads 12"):
        convert_released_adapter(src, tmp_path / "out.pt", PLUG)


def test_unconverted_release_file_is_refused_by_the_loader(converted, released_files):
    from kadapter_fairseq.hub import KAdapterHub

    base, _ = converted
    with pytest.raises(CheckpointError, match="kadapter-convert kadapter-adapter"):
        KAdapterHub.from_pretrained(base, adapters={"fac": released_files["fac"]})
