"""kadapter-bench's output, and the streaming converters' --workers determinism. No timing assertions."""
import filecmp
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

ROW_KEYS = {"name", "step_s", "tokens_per_s", "peak_mem_mb", "trained_params"}
RATIOS = {"adapter_vs_full", "cached_adapter_vs_full", "lora_vs_full", "adapter_vs_lora", "two_vs_one_adapter_inference"}


def test_bench_cli_writes_every_row_and_ratio(tmp_path):
    from kadapter_fairseq.tools.bench import ROWS

    out = tmp_path / "bench.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "kadapter_fairseq.tools.bench", "--size", "tiny", "--batch", "2", "--tokens", "16",
         "--steps", "2", "--json", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert (result["size"], result["batch"], result["tokens"], result["device"]) == ("tiny", 2, 16, "cpu")
    assert [r["name"] for r in result["rows"]] == list(ROWS)
    rows = {r["name"]: r for r in result["rows"]}
    for row in result["rows"]:
        assert set(row) == ROW_KEYS
        assert all(row[k] > 0 for k in ("step_s", "tokens_per_s", "peak_mem_mb")), row
        assert row["tokens_per_s"] == pytest.approx(2 * 16 / row["step_s"])
    assert set(result["ratios"]) == RATIOS and all(v > 0 for v in result["ratios"].values())
    # the ratios are the step times' quotients, as documented
    assert result["ratios"]["adapter_vs_full"] == pytest.approx(rows["full_finetune"]["step_s"] / rows["kadapter_knowledge"]["step_s"])
    assert result["ratios"]["two_vs_one_adapter_inference"] == pytest.approx(
        rows["inference_2_adapters"]["step_s"] / rows["inference_1_adapter"]["step_s"])
    # what trains in each row: everything, LoRA's few, one adapter, fusion and head only; nothing at inference
    trained = {n: r["trained_params"] for n, r in rows.items()}
    assert trained["full_finetune"] > trained["kadapter_knowledge"] > trained["kadapter_efficient"] > 0
    assert trained["kadapter_knowledge"] == trained["kadapter_knowledge_cached"]
    assert trained["kadapter_efficient"] == trained["kadapter_efficient_cached"]
    assert 0 < trained["lora"] < trained["full_finetune"]
    assert all(trained[f"inference_{n}"] == 0 for n in ("1_adapter", "2_adapters", "4_adapters"))
    assert "adapter_vs_full" in proc.stdout


def test_bench_rejects_bad_options():
    from kadapter_fairseq.tools.bench import main

    with pytest.raises(SystemExit) as e:
        main(["--steps", "0"])
    assert e.value.code == 2


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
