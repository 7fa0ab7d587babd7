"""kadapter-bench's output, and the streaming converters' --workers determinism. No timing assertions."""
import filecmp
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

ROW_KEYS = {"name", "step_s", "tokens_per_s", "peak_mem_mb", "trained_params", "base_calls_per_step", "flops_per_token",
            "tflops_per_s", "util"}
RATIOS = {"adapter_vs_full", "cached_adapter_vs_full", "lora_vs_full", "adapter_vs_lora", "two_vs_one_adapter_inference"}
CACHED = ("kadapter_knowledge_cached", "kadapter_efficient_cached")


def run_bench(tmp_path, *args):
    out = tmp_path / "bench.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "kadapter_fairseq.tools.bench", "--size", "tiny", "--batch", "2", "--tokens", "16",
         "--steps", "2", "--json", str(out), *args],
        cwd=REPO, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text()), proc.stdout


def test_bench_cli_writes_every_row_ratio_and_utilisation(tmp_path):
    from kadapter_fairseq.tools.bench import ROWS, SIZES

    result, stdout = run_bench(tmp_path, "--precision", "fp32,bf16")
    assert (result["size"], result["batch"], result["tokens"], result["device"]) == ("tiny", 2, 16, "cpu")
    assert result["precisions"] == ["fp32", "bf16"]
    assert result["provenance"]["dtype"] == "fp32,bf16" and result["provenance"]["threads"] == 1
    for precision, run in result["runs"].items():
        assert run["peak"]["name"] == "peak" and run["peak"]["tflops_per_s"] > 0
        assert run["peak"]["dtype"] == {"fp32": "float32", "bf16": "bfloat16"}[precision]
        assert run["peak_tflops_used"] == run["peak"]["tflops_per_s"]
        assert [r["name"] for r in run["rows"]] == list(ROWS)
        rows = {r["name"]: r for r in run["rows"]}
        for row in run["rows"]:
            assert ROW_KEYS <= set(row) <= ROW_KEYS | {"base_tflops_per_s", "base_util"}
            assert all(row[k] > 0 for k in ("step_s", "tokens_per_s", "peak_mem_mb", "flops_per_token", "util")), row
            assert row["tokens_per_s"] == pytest.approx(2 * 16 / row["step_s"])
            # achieved FLOP/s = FLOPs/token x tokens/step / step time; util = that / the peak row
            assert row["tflops_per_s"] == pytest.approx(row["flops_per_token"] * 2 * 16 / row["step_s"] / 1e12)
            assert row["util"] == pytest.approx(row["tflops_per_s"] / run["peak"]["tflops_per_s"])
        assert set(run["ratios"]) == RATIOS and all(v > 0 for v in run["ratios"].values())
        # the ratios are the step times' quotients, as documented
        assert run["ratios"]["adapter_vs_full"] == pytest.approx(rows["full_finetune"]["step_s"] / rows["kadapter_knowledge"]["step_s"])
        assert run["ratios"]["two_vs_one_adapter_inference"] == pytest.approx(
            rows["inference_2_adapters"]["step_s"] / rows["inference_1_adapter"]["step_s"])
        # what trains in each row: everything, LoRA's few, one adapter, fusion and head only; nothing at inference
        trained = {n: r["trained_params"] for n, r in rows.items()}
        assert trained["full_finetune"] > trained["kadapter_knowledge"] > trained["kadapter_efficient"] > 0
        assert trained["kadapter_knowledge"] == trained["kadapter_knowledge_cached"]
        assert trained["kadapter_efficient"] == trained["kadapter_efficient_cached"]
        assert 0 < trained["lora"] < trained["full_finetune"]
        assert all(trained[f"inference_{n}"] == 0 for n in ("1_adapter", "2_adapters", "4_adapters"))
        # the cached rows never run the base in a step; every other row runs it once
        for name, row in rows.items():
            assert row["base_calls_per_step"] == (0 if name in CACHED else 1), name
        # the frozen base runs forward only in the adapter and inference rows: they alone get a base utilisation
        assert {n for n, r in rows.items() if "base_util" in r} == {
            "kadapter_knowledge", "kadapter_efficient", "inference_1_adapter", "inference_2_adapters", "inference_4_adapters"}

        # the FLOP model by hand for full fine-tuning: 6 per non-embedding parameter, attention 12*T*d per layer
        s = SIZES["tiny"]
        layer = 4 * (s["dim"] ** 2 + s["dim"]) + 2 * s["dim"] * s["ffn"] + s["ffn"] + s["dim"] + 4 * s["dim"]
        head = s["dim"] ** 2 + s["dim"] + s["dim"] * 2 + 2
        emb_ln = 2 * s["dim"]
        expected = 6 * (s["layers"] * layer + head + emb_ln) + 12 * 16 * s["dim"] * s["layers"]
        assert rows["full_finetune"]["flops_per_token"] == expected
        # inference: 2 per parameter that ran (not the LM head, not the embeddings) + 4*T*d per attention
        assert run["flop_ratios"]["two_vs_one_adapter_inference"] == pytest.approx(
            rows["inference_2_adapters"]["flops_per_token"] / rows["inference_1_adapter"]["flops_per_token"])
        assert run["flop_ratios"]["two_vs_one_adapter_inference"] > 1
    speedup = result["speedups"]["bf16_vs_fp32"]
    times = {p: {r["name"]: r["step_s"] for r in result["runs"][p]["rows"]} for p in ("fp32", "bf16")}
    assert speedup == pytest.approx({n: times["fp32"][n] / times["bf16"][n] for n in times["fp32"]})
    for text in ("peak: torch.matmul 2048x2048", "| util |", "two_vs_one_adapter_inference (FLOP model)", "## bf16_vs_fp32"):
        assert text in stdout


def test_cached_rows_never_run_the_base(monkeypatch):
    """Counted at the base's own forward, in this process: the cached rows' only base pass is the
    one that fills their cache before the timed steps; the uncached row runs it every step."""
    from argparse import Namespace

    from fairseq.models.transformer import TransformerEncoderBase

    from kadapter_fairseq.tools import bench

    calls = []
    forward = TransformerEncoderBase.forward
    monkeypatch.setattr(TransformerEncoderBase, "forward", lambda self, *a, **k: calls.append(1) or forward(self, *a, **k))
    a = Namespace(size="tiny", batch=2, tokens=16, device="cpu", threads=None, warmup=1, steps=2)
    for name in CACHED:
        calls.clear()
        row = bench.run_row(name, a, "fp32")
        assert len(calls) == 1 and row["base_calls_per_step"] == 0, name
    calls.clear()
    row = bench.run_row("kadapter_knowledge", a, "fp32")
    assert len(calls) == 3 and row["base_calls_per_step"] == 1


def test_bench_rejects_bad_options(capsys):
    from kadapter_fairseq.tools.bench import main

    with pytest.raises(SystemExit) as e:
        main(["--steps", "0"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["--precision", "fp8"])
    assert e.value.code == 2 and "fp8 is not one of" in capsys.readouterr().err
    # fp16 and amp are GPU modes: refused on CPU with the reason, in the row's own process
    assert main(["--precision", "fp16", "--steps", "1"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_train_bench_reads_fairseqs_words_per_second(tmp_path):
    """The real path at a tiny shape: kadapter-train runs in fp32 and bf16, fairseq's per-update
    words/s come back, and the bench row of the same shape stands beside them."""
    from kadapter_fairseq.tools.train_bench import format_train_path, measure

    logs = []
    result = measure("tiny", 2, 16, ["fp32", "bf16"], updates=3, warmup=1, work=str(tmp_path), log=lambda *a, **k: logs.append(a))
    for precision in ("fp32", "bf16"):
        run = result["runs"][precision]
        assert len(run["wps_per_update"]) == 3 and run["timed_updates"] == 2
        assert run["words_per_s"] == pytest.approx(sorted(run["wps_per_update"][1:])[0] / 2 + sorted(run["wps_per_update"][1:])[1] / 2)
        assert run["bench_tokens_per_s"] > 0
        assert ("common.bf16=true" in run["command"]) == (precision == "bf16")
        assert "model._name=roberta_kadapter_tiny" in run["command"]
    assert set(result["speedups"]) == {"bf16_vs_fp32"}
    assert "| bf16 |" in format_train_path(result)


def _converter_outputs(out_dir):
    names = []
    for root, _, files in os.walk(out_dir):
        names += [os.path.relpath(os.path.join(root, f), out_dir) for f in files]
    return sorted(names)


@pytest.mark.parametrize("converter", ["trex", "conllu"])
def test_workers_give_identical_output(tmp_path, tiny_base, converter):
    """--workers 2 (encoding over a process pool) writes byte-identical files to --workers 1."""
    from conftest import shared_data

    if converter == "trex":
        src = shared_data("trex", "rebel_sample.jsonl")
        sample = tmp_path / "sample.jsonl"
        with open(src, encoding="utf-8") as f:
            sample.write_text("".join(f.readline() for _ in range(150)))
        extra = ["--min-count", "2"]
    else:
        sample = os.path.join(REPO, "examples", "data", "ud_english_ewt", "en_ewt-ud-dev_sample.conllu")
        extra = []
    module = __import__(f"data_prep.{converter}", fromlist=["main"])
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        assert module.main([str(sample), "--roberta-dir", tiny_base, "--out", str(out), "--workers", str(workers)] + extra) == 0
        outs.append(out)
    files = [f for f in _converter_outputs(outs[0]) if not f.endswith("preprocess.log")]  # the log holds paths and times
    assert files == [f for f in _converter_outputs(outs[1]) if not f.endswith("preprocess.log")]
    assert "input0/train.bin" in files and "valid.ids" in files
    match, mismatch, errors = filecmp.cmpfiles(outs[0], outs[1], files, shallow=False)
    assert not mismatch and not errors
    info = json.loads((outs[0] / "prep.json").read_text())
    assert info["examples"]["train"] > 0 and info["examples"]["valid"] > 0


def test_streamed_trex_splits_equal_the_list_based_ones():
    """Two passes with 64-bit hashes choose the same triples, splits and label order as
    filter_relations + split_examples (seeded_split) + build_label_vocabulary on a list."""
    from conftest import shared_data
    from data_prep.common import SkipCounter, read_json_records
    from data_prep.relations import build_label_vocabulary, filter_relations
    from data_prep.trex import document_examples, split_examples, stream_splits

    path = shared_data("trex", "rebel_sample.jsonl")
    listed = SkipCounter()
    examples = [ex for line, doc in read_json_records(path) for ex in document_examples(doc, path, line, listed)]
    expected = split_examples(filter_relations(examples, listed, 3, ["P31"]), 0.1, seed=7)
    streamed = SkipCounter()
    n_docs, stream, labels = stream_splits([path], streamed, 3, ["P31"], 0.1, seed=7)
    got = {"train": [], "valid": []}
    for split, ex in stream.pairs:
        got[split].append(ex.id)
    assert got == {s: [ex.id for ex in exs] for s, exs in expected.items()}
    assert len(got["valid"]) > 0
    assert labels.labels == build_label_vocabulary(expected["train"]).labels
    assert streamed.as_dict() == listed.as_dict()
