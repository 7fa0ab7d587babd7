"""bf16 along the real paths: the frozen-base invariant of a `kadapter-train common.bf16=true` run,
the hub and `kadapter-predict --bf16` (model stored in bf16 once, decisions from fp32 logits), and
the 16-bit speed remedies changing nothing in fp32. No timing assertions: speed lives in kadapter-bench."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from kadapter_fairseq.tools.base_check import base_tensors, check_checkpoint, compare_base

FIXTURES = os.path.join(REPO, "tests", "fixtures", "downstream")


def kadapter_train(config, *overrides, timeout=600):
    proc = subprocess.run([sys.executable, "-m", "kadapter_fairseq.tools.train", "--config-dir", "configs",
                           "--config-name", config, *overrides],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def dep_data(tmp_path_factory, tiny_base):
    from data_prep import conllu as conllu_cli
    from test_feature_cache import write_conllu

    root = tmp_path_factory.mktemp("bf16dep")
    write_conllu(root / "heads.conllu", n_sentences=24)
    conllu_cli.main([str(root / "heads.conllu"), "--roberta-dir", tiny_base, "--out", str(root / "dep"),
                     "--valid-fraction", "0.25"])
    return str(root / "dep")


@pytest.fixture(scope="module")
def bf16_knowledge_run(dep_data, tiny_base, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("bf16run")
    log = kadapter_train("dependency_head_prediction_cpu", f"task.data={dep_data}", f"model.roberta_path={tiny_base}",
                         f"checkpoint.save_dir={save_dir}", f"hydra.run.dir={save_dir}", "common.bf16=true",
                         "optimization.max_update=4", "optimization.max_epoch=4", "dataset.batch_size=8")
    return str(save_dir / "checkpoint_last.pt"), log


def test_bf16_knowledge_run_keeps_the_base_as_model_pt_cast_to_bf16(bf16_knowledge_run, tiny_base):
    checkpoint, _ = bf16_knowledge_run
    model_pt = os.path.join(tiny_base, "model.pt")
    result = check_checkpoint(model_pt, checkpoint)
    assert result["precision"] == "bf16"  # read from the run's own config
    assert result["identical"] and result["tensors"] > 10, result
    # the positive control: the run's base is not model.pt's fp32 values (the check that compared with
    # fp32 would call it changed), and one unit in bf16's last place on one tensor is caught
    assert not compare_base(base_tensors(model_pt), torch.load(checkpoint, weights_only=False)["model"], "fp32")["identical"]
    state = torch.load(checkpoint, weights_only=False)
    key = "encoder.sentence_encoder.layers.0.fc1.weight"
    w = state["model"][key].to(torch.bfloat16)
    bumped = w.view(torch.int16).clone()
    bumped[0, 0] += 1
    state["model"][key] = bumped.view(torch.bfloat16).float()
    assert compare_base(base_tensors(model_pt), state["model"], "bf16")["changed"] == [key]
    # the run did update (the adapter), and fairseq wrote its bf16 tensors widened to fp32
    assert state["optimizer_history"][-1]["num_updates"] == 4
    adapter = {k: v for k, v in state["model"].items() if k.startswith("adapters.")}
    assert adapter and all(v.dtype == torch.float32 for v in adapter.values())
    assert all(torch.equal(v, v.to(torch.bfloat16).float()) for v in adapter.values())


def test_compare_base_is_exact_in_fp32():
    base = {"encoder.a": torch.tensor([1.0, 2.0 + 2**-20]), "encoder.i": torch.tensor([3, 4])}
    same = {k: v.clone() for k, v in base.items()}
    assert compare_base(base, same, "fp32")["identical"]
    moved = dict(same, **{"encoder.a": torch.tensor([1.0, 2.0])})  # below bf16's resolution, not fp32's
    assert compare_base(base, moved, "fp32")["changed"] == ["encoder.a"]
    assert compare_base(base, moved, "bf16")["identical"]
    assert compare_base(base, {"encoder.a": base["encoder.a"]}, "fp32")["missing"] == ["encoder.i"]


def test_hub_bf16_stores_once_and_refuses_going_back(tiny_base):
    from kadapter_fairseq.hub import KAdapterHub
    from kadapter_fairseq.precision import resolve

    fp32 = KAdapterHub.from_pretrained(tiny_base, adapters={"fac": None}, fusion="add", arch="roberta_kadapter_tiny")
    torch.manual_seed(0)
    bf16 = KAdapterHub.from_pretrained(tiny_base, adapters={"fac": None}, fusion="add", arch="roberta_kadapter_tiny")
    bf16.model.load_state_dict(fp32.model.state_dict())
    assert bf16.set_precision("bf16")[0] == "bf16" and bf16.dtype == torch.bfloat16
    tokens = torch.tensor([[0, 10, 11, 12, 2]])
    out16, out32 = bf16.extract_features(tokens), fp32.extract_features(tokens)
    assert out16["fused"].dtype == torch.bfloat16 and out32["fused"].dtype == torch.float32
    assert torch.allclose(out16["fused"].float(), out32["fused"], atol=0.1, rtol=0.05)
    logits = bf16.masked_lm_logits(out16["base"])
    assert logits.dtype == torch.float32 and logits.shape[-1] == len(bf16.dictionary)
    with pytest.raises(Exception, match="stored in bf16"):
        bf16.set_precision("fp32")
    with pytest.raises(Exception, match="load it in fp32 to save adapter files"):
        bf16.save_adapters("/nonexistent/fac.pt")
    auto = KAdapterHub.from_pretrained(tiny_base, precision="auto")
    assert auto.precision == resolve("auto")[0]


def test_native_gelu_and_dense_layout_change_nothing_in_fp32(tiny_base):
    """The 16-bit remedies (modules/low_precision.py): torch's GELU is fairseq's, forward and
    backward, bit for bit, in fp32 and bf16; the contiguous copy is made in 16 bits only."""
    import torch.nn.functional as F
    from fairseq.modules.gelu import gelu as fairseq_gelu

    from kadapter_fairseq.modules.low_precision import dense_layout

    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(64, 96, dtype=dtype, requires_grad=True)
        g = torch.randn(64, 96, dtype=dtype)
        a = fairseq_gelu(x)
        (ga,) = torch.autograd.grad(a, x, g)
        b = F.gelu(x)
        (gb,) = torch.autograd.grad(b, x, g)
        assert torch.equal(a, b) and torch.equal(ga, gb), dtype
    strided = torch.randn(4, 5, 6).transpose(0, 1)
    assert dense_layout(strided) is strided
    assert dense_layout(strided.bfloat16()).is_contiguous()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert dense_layout(strided).is_contiguous()

    from kadapter_fairseq.hub import KAdapterHub

    hub = KAdapterHub.from_pretrained(tiny_base, adapters={"fac": None}, fusion="add", arch="roberta_kadapter_tiny")
    assert all(layer.activation_fn is F.gelu for layer in hub.model.encoder.sentence_encoder.layers)


@pytest.fixture(scope="module")
def tacred_checkpoint(tiny_base, tmp_path_factory):
    from data_prep.tacred import main as convert_main

    root = tmp_path_factory.mktemp("bf16tacred")
    data = root / "bin"
    dev = os.path.join(FIXTURES, "tacred_dev.json")
    convert_main(["--roberta-dir", tiny_base, "--train", os.path.join(FIXTURES, "tacred_train.json"), "--valid", dev,
                  "--max-len", "64", "--out", str(data)])
    kadapter_train("tacred_cpu", f"task.data={data}", f"model.roberta_path={tiny_base}", f"checkpoint.save_dir={root / 'ckpt'}",
                   f"hydra.run.dir={root}", "optimization.max_update=2")
    return str(root / "ckpt" / "checkpoint_best.pt"), str(data), dev


def test_predict_bf16(tacred_checkpoint, tmp_path, capsys):
    from kadapter_fairseq.predict import main as predict_main

    checkpoint, data, dev = tacred_checkpoint
    outs = {}
    for flag in ([], ["--bf16"]):
        out = tmp_path / f"pred{len(flag)}.jsonl"
        assert predict_main(["--task", "tacred", "--checkpoint", checkpoint, "--data-dir", data, "--input", dev,
                             "--output", str(out), *flag]) == 0
        outs[bool(flag)] = [json.loads(line) for line in out.read_text().splitlines()]
    assert "precision bf16" in capsys.readouterr().err
    assert [r["id"] for r in outs[True]] == [r["id"] for r in outs[False]]
    assert all(set(r) == {"id", "label"} for r in outs[True])
    # two updates from the tiny random base leave the classes far apart: bf16 rounding does not flip them
    agree = sum(a["label"] == b["label"] for a, b in zip(outs[True], outs[False]))
    assert agree >= len(outs[True]) - 1
