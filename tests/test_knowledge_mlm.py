"""The delta readout (adapter skip path, ``delta`` output fusion) and the ``knowledge_mlm`` objective."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

import kadapter_fairseq  # noqa: F401  (registers the model, tasks, criterions)
from kadapter_fairseq.errors import ConfigError
from kadapter_fairseq.modules.fusion import AdapterFusion
from model_helpers import build


def tokens_of(model, lengths=(7, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    d = model.encoder.dictionary
    out = torch.full((len(lengths), max(lengths)), d.pad(), dtype=torch.long)
    for i, n in enumerate(lengths):
        body = torch.randint(d.nspecial, len(d) - 1, (n - 2,), generator=g)
        out[i, :n] = torch.cat([torch.tensor([d.bos()]), body, torch.tensor([d.eos()])])
    return out


def perturb(model, std=0.3):
    """Move every adapter weight well away from its near-identity init, so the deltas are large."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.adapters.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)


def zero_up_projections(model):
    with torch.no_grad():
        for adapter in model.adapters.values():
            for layer in adapter.layers:
                layer.up_proj.weight.zero_()
                layer.up_proj.bias.zero_()


# ------------------------------------------------------------------------------------------------
# the skip path and the delta


@pytest.mark.parametrize("input_fusion", ["add", "concat"])
def test_zero_up_projections_make_output_equal_skip_path_and_delta_zero(tiny_base, input_fusion):
    model = build(tiny_base, adapter_input_fusion=input_fusion, adapter_fusion="delta").eval()
    perturb(model)
    zero_up_projections(model)
    tokens = tokens_of(model)
    fused, extra = model(tokens, features_only=True)
    for name, adapter in model.adapters.items():
        skip = adapter.skip_path(extra["inner_states"]).transpose(0, 1)
        assert torch.equal(extra["adapters"][name], skip)
        assert torch.equal(extra["adapter_deltas"][name], torch.zeros_like(skip))
    # the delta fusion is then exactly the base's last layer
    assert torch.equal(fused, extra["base"])


def test_skip_path_of_add_input_fusion_is_the_sum_of_plugged_states(tiny_base):
    model = build(tiny_base, adapter_names="fac", adapter_plug_layers="0,2,3").eval()
    _, extra = model(tokens_of(model), features_only=True)
    inner = extra["inner_states"]
    assert torch.allclose(model.adapters["fac"].skip_path(inner), inner[0] + inner[2] + inner[3], atol=1e-6)


@pytest.mark.parametrize("input_fusion", ["add", "concat"])
def test_delta_is_output_minus_skip_path(tiny_base, input_fusion):
    model = build(tiny_base, adapter_input_fusion=input_fusion, adapter_fusion="delta").eval()
    perturb(model)
    tokens = tokens_of(model)
    fused, extra = model(tokens, features_only=True)
    inner = extra["inner_states"]
    expected = extra["base"].clone()
    for name, adapter in model.adapters.items():
        # by hand: the chain run twice, once as is and once with no up-projection at all
        a = torch.zeros_like(inner[0])
        s = torch.zeros_like(inner[0])
        mask = tokens.eq(model.padding_idx)
        for plug, layer in zip(adapter.cfg.plug_layers, adapter.layers):
            if layer.input_proj is not None:
                x = torch.cat([inner[plug], a], -1) @ layer.input_proj.weight.T + layer.input_proj.bias
                s = torch.cat([inner[plug], s], -1) @ layer.input_proj.weight.T + layer.input_proj.bias
            else:
                x, s = inner[plug] + a, inner[plug] + s
            y = layer.down_proj(x)  # T×B×H, as fairseq's encoder layers read it
            for enc in layer.encoder:
                y = enc(y, encoder_padding_mask=mask)
            a = x + layer.up_proj(y)
        a, s = a.transpose(0, 1), s.transpose(0, 1)
        assert torch.allclose(extra["adapters"][name], a, atol=1e-5)
        delta = extra["adapter_deltas"][name]
        assert delta.abs().max() > 0.1, "the perturbed adapter must contribute something"
        assert torch.allclose(delta, a - s, atol=1e-4)
        assert torch.allclose(adapter.delta(inner, mask).transpose(0, 1), delta)
        expected = expected + (a - s)
    assert torch.allclose(fused, expected, atol=1e-4)


def test_delta_fusion_has_no_parameters_and_other_fusions_are_unchanged(tiny_base):
    delta = build(tiny_base, adapter_fusion="delta").eval()
    add = build(tiny_base, adapter_fusion="add").eval()
    assert not list(delta.fusion.parameters())
    tokens = tokens_of(delta)
    _, extra = add(tokens, features_only=True)
    assert extra["adapter_deltas"] is None, "only the delta fusion computes deltas"
    with pytest.raises(ConfigError, match="adapter fusion must be one of"):
        AdapterFusion(["fac"], 32, "sum")


def test_delta_fusion_refuses_an_efficient_phase_adapter_cache(tiny_base):
    model = build(tiny_base, adapter_fusion="delta", train_phase="efficient").eval()
    with pytest.raises(ConfigError, match="delta fusion"):
        model.compute_cacheable_features(tokens_of(model))
    # the knowledge phase caches base states, from which the deltas are computed as usual
    knowledge = build(tiny_base, adapter_fusion="delta", train_phase="knowledge").eval()
    tokens = tokens_of(knowledge)
    cached = knowledge.compute_cacheable_features(tokens)
    assert torch.equal(knowledge(tokens, features_only=True, cached_features=cached)[0],
                       knowledge(tokens, features_only=True)[0])


def test_lm_head_switch(tiny_base):
    frozen = build(tiny_base, adapter_names="fac", train_phase="knowledge")
    assert not any(p.requires_grad for p in frozen.encoder.parameters())
    trains = build(tiny_base, adapter_names="fac", train_phase="knowledge", train_lm_head=True)
    head = trains.encoder.lm_head
    assert head.dense.weight.requires_grad and head.layer_norm.weight.requires_grad and head.bias.requires_grad
    # the output embedding is tied to the input embedding: it stays with the frozen base
    assert head.weight is trains.encoder.sentence_encoder.embed_tokens.weight and not head.weight.requires_grad
    others = [n for n, p in trains.encoder.named_parameters() if p.requires_grad and not n.startswith("lm_head.")]
    assert others == []


def test_delta_fusion_through_the_lm_head_matches_hand_computation(tiny_base, tmp_path):
    """What the LM head scores under the delta fusion (the LAMA probe's readout and knowledge_mlm's) is
    lm_head(h_L + Σ (a_K − s_K)), with s_K the skip path computed by hand (Σ h[p_k] for add input fusion);
    it survives saving and loading the adapters through the hub."""
    from kadapter_fairseq.hub import KAdapterHub

    model = build(tiny_base)
    perturb(model)
    model.save_adapters(tmp_path / "fac.pt", names=["fac"])
    model.save_adapters(tmp_path / "lin.pt", names=["lin"])
    paths = {"fac": str(tmp_path / "fac.pt"), "lin": str(tmp_path / "lin.pt")}
    hub = KAdapterHub.from_pretrained(tiny_base, adapters=paths, fusion="delta", arch="roberta_kadapter_tiny")
    tokens = tokens_of(model, lengths=(9, 6, 4))
    positions = torch.tensor([3, 1, 2])
    rows = torch.arange(3)
    masked = torch.zeros_like(tokens, dtype=torch.bool)
    masked[rows, positions] = True
    with torch.no_grad():
        scores, extra = hub.model(tokens, masked_tokens=masked)
        feature = extra["base"][rows, positions]
        for name, adapter in hub.model.adapters.items():
            skip = sum(extra["inner_states"][p][positions, rows] for p in adapter.cfg.plug_layers)
            feature = feature + extra["adapters"][name][rows, positions] - skip
        expected = hub.model.encoder.lm_head(feature)
        base_only = hub.model.encoder.lm_head(extra["base"][rows, positions])
    assert torch.allclose(scores, expected, atol=1e-4)
    assert torch.equal(scores.argmax(-1), expected.argmax(-1))
    assert not torch.allclose(scores, base_only, atol=1e-3), "the perturbed adapters must change the scores"


# ------------------------------------------------------------------------------------------------
# knowledge_mlm end to end on a CI-sized world

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
WORLD = ["--seed", "3", "--persons", "12", "--cities", "6", "--countries", "3", "--companies", "3", "--universities", "3",
         "--statements", "2", "--mentions", "2", "--train-templates", "4"]


@pytest.fixture(scope="module")
def ci_world(tmp_path_factory):
    """A small world, its knowledge data, and a tiny random base over the world's vocabulary (every name one piece)
    whose token embeddings are scaled to a trained base's size: a freshly initialised LM head's scores are nearly
    flat (embedding rows of norm ~0.1), which no feature could lift."""
    from data_prep import world
    from kadapter_fairseq.tools.tiny_base import make_tiny_base

    root = tmp_path_factory.mktemp("ci_world")
    out = str(root / "world")
    world.main([*WORLD, "--out", out])
    lines = open(os.path.join(out, "base_text.txt"), encoding="utf-8").read().splitlines()
    names = list(json.load(open(os.path.join(out, "world.json")))["entities"])
    size, split = world.single_piece_vocab_size(lines, names, 500, seed=1, valid_fraction=0.01, step=50)
    assert not split
    base = make_tiny_base(str(root / "base"), texts=lines, vocab_size=size + 50, seed=0)
    state = torch.load(os.path.join(base, "model.pt"), weights_only=False)
    state["model"]["encoder.sentence_encoder.embed_tokens.weight"] *= 10
    torch.save(state, os.path.join(base, "model.pt"))
    world.main([*WORLD, "--out", out, "--roberta-dir", base])  # the world's files again (same seed), then data_prep.kg
    return {"world": out, "base": base, "knowledge": os.path.join(out, "knowledge")}


def train(ci_world, save, *overrides):
    cmd = [os.path.join(BIN, "kadapter-train"), "--config-dir", os.path.join(REPO, "configs"), "--config-name",
           "knowledge_mlm_cpu", f"common.user_dir={os.path.join(REPO, 'kadapter_fairseq')}",
           f"task.data={ci_world['knowledge']}/mlm", f"model.roberta_path={ci_world['base']}", f"checkpoint.save_dir={save}",
           "optimization.lr=[1e-2]", "dataset.batch_size=16", *overrides]
    proc = subprocess.run(cmd, cwd=str(save.parent), capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    return log


def probe(ci_world, adapter, partition, out):
    from kadapter_fairseq.probe import cli

    data = os.path.join(ci_world["knowledge"], "probe", "train_templates", partition)
    args = cli.build_parser().parse_args(["lama", "--roberta-dir", ci_world["base"], "--adapters", f"fac={adapter}",
                                          "--fusion", "delta", "--compare", "--data", data, "--corpus", "TREx", "--out", str(out)])
    results = cli.probe_lama(args)
    return results, json.load(open(os.path.join(data, "majority.json")))["macro"]


def test_knowledge_mlm_stores_the_adapter_partition_and_leaves_the_base(ci_world, tmp_path):
    save = tmp_path / "ckpt"
    log = train(ci_world, save, "optimization.max_update=300")
    assert re.search(r"valid on 'valid' subset \| loss [0-9.]+ \| p@1 [0-9.]+", log)
    adapter = save / "adapters" / "fac.pt"
    trained, trained_majority = probe(ci_world, adapter, "adapter", tmp_path / "p_adapter")
    unseen, unseen_majority = probe(ci_world, adapter, "none", tmp_path / "p_none")
    # the facts the adapter was trained on are recalled well above the majority baseline, facts never stated are not
    assert trained["macro_p@1"] > trained_majority + 0.1, (trained["macro_p@1"], trained_majority)
    assert unseen["macro_p@1"] < unseen_majority
    assert trained["without_adapters"]["macro_p@1"] < trained_majority  # the random base alone knows nothing
    # the base and its LM head are bit-identical to the base directory's
    base = torch.load(os.path.join(ci_world["base"], "model.pt"), map_location="cpu", weights_only=False)["model"]
    after = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    keys = [k for k in base if k.startswith("encoder.")]
    assert any(k.startswith("encoder.lm_head.") for k in keys)
    for k in keys:
        assert torch.equal(base[k], after[k]), k
    assert not (save / "adapters" / "lm_head.pt").exists()


def test_knowledge_mlm_lm_head_switch_trains_the_head_but_not_the_embedding(ci_world, tmp_path):
    save = tmp_path / "ckpt"
    train(ci_world, save, "optimization.max_update=10", "model.train_lm_head=true")
    base = torch.load(os.path.join(ci_world["base"], "model.pt"), map_location="cpu", weights_only=False)["model"]
    after = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    changed = {k for k in base if k.startswith("encoder.") and not torch.equal(base[k], after[k])}
    assert changed == {"encoder.lm_head.dense.weight", "encoder.lm_head.dense.bias", "encoder.lm_head.layer_norm.weight",
                       "encoder.lm_head.layer_norm.bias", "encoder.lm_head.bias"}
    head = torch.load(save / "adapters" / "lm_head.pt", map_location="cpu", weights_only=False)
    assert torch.equal(head["lm_head"]["dense.weight"], after["encoder.lm_head.dense.weight"])


def test_knowledge_mlm_refuses_another_fusion(tiny_base):
    from kadapter_fairseq.tasks.knowledge_mlm import KnowledgeMLMTask

    with pytest.raises(ConfigError, match="set model.adapter_fusion=delta"):
        KnowledgeMLMTask.register_heads(None, build(tiny_base, adapter_names="fac", adapter_fusion="concat"))
    KnowledgeMLMTask.register_heads(None, build(tiny_base, adapter_names="fac", adapter_fusion="delta"))
    KnowledgeMLMTask.register_heads(None, build(tiny_base, adapter_names="", adapter_fusion="concat"))  # the base alone
