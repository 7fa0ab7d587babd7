"""kadapter-probe lama: LAMA's rules, hand-computed scores, the zero-adapter identity, LAMA-UHN,
bad input, and the hub reading each adapter file once."""
import json
import os
import shutil

import pytest
import torch

from kadapter_fairseq.probe.cli import main

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "lama")
# the probe base's text: every object of the fixtures recurs, so each is one sentencepiece word
TEXT = [
    "Obama was born in Honolulu and Curie was born in Warsaw .",
    "Turing was born in London and Dupont was born in Paris .",
    "Paris is the capital of France ; Berlin is the capital of Germany .",
    "London is the capital of England ; Warsaw is the capital of Poland .",
    "The native language of Turing is English ; Berlin is located in Germany .",
    "A bird can fly and the quick brown fox can jump over the dog .",
] * 6
# bias-only LM head: every query scores the candidates in this order, all other words below
BIASES = {"Paris": 6.0, "London": 5.0, "Berlin": 4.0, "Warsaw": 3.0, "Honolulu": 2.0, "Germany": 1.0, "English": -2.0}


@pytest.fixture(scope="module")
def probe_base(tmp_path_factory):
    from kadapter_fairseq.tools.tiny_base import make_tiny_base

    return make_tiny_base(str(tmp_path_factory.mktemp("probe_base")), texts=TEXT, seed=0)


@pytest.fixture(scope="module")
def biased_base(probe_base, tmp_path_factory):
    """The probe base with an LM head whose scores ignore the input: logits = bias."""
    out = str(tmp_path_factory.mktemp("biased_base"))
    for name in os.listdir(probe_base):
        shutil.copy(os.path.join(probe_base, name), out)
    state = torch.load(os.path.join(out, "model.pt"), weights_only=False)
    sd = state["model"]
    symbols = [line.split()[0] for line in open(os.path.join(out, "dict.txt"), encoding="utf-8")]
    bias = torch.full_like(sd["encoder.lm_head.bias"], -1.0)
    for word, value in BIASES.items():
        bias[symbols.index("\u2581" + word) + 4] = value  # dictionary = 4 specials + dict.txt
    # dense = 0 -> gelu(0) = 0 -> layer norm gives its bias, set to 0 -> logits = W·0 + bias
    for key in ("encoder.lm_head.dense.weight", "encoder.lm_head.dense.bias", "encoder.lm_head.layer_norm.bias"):
        sd[key] = torch.zeros_like(sd[key])
    sd["encoder.lm_head.bias"] = bias
    torch.save(state, os.path.join(out, "model.pt"))
    return out


def run(args, out):
    main(["lama", "--out", str(out)] + [str(a) for a in args])
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    with open(os.path.join(out, "predictions.jsonl")) as f:
        predictions = [json.loads(line) for line in f]
    return results, predictions


def error_of(args, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["lama", "--out", str(tmp_path / "out")] + [str(a) for a in args])
    msg = str(e.value.code)
    assert msg.startswith("kadapter-probe: ") and "\n" not in msg, msg
    return msg


def save_adapter(base, path, up_std=None, fusion="add", include_fusion=False, names=("fac",)):
    """A fresh tiny adapter; ``up_std=0`` zeroes its up-projections, a number redraws them."""
    from kadapter_fairseq.hub import KAdapterHub

    hub = KAdapterHub.from_pretrained(base, adapters={n: None for n in names}, fusion=fusion, arch="roberta_kadapter_tiny")
    torch.manual_seed(1)
    for adapter in hub.model.adapters.values():
        for layer in adapter.layers:
            if up_std == 0:
                torch.nn.init.zeros_(layer.up_proj.weight)
                torch.nn.init.zeros_(layer.up_proj.bias)
            elif up_std is not None:
                torch.nn.init.normal_(layer.up_proj.weight, std=up_std)
    hub.save_adapters(str(path), include_fusion=include_fusion)
    return str(path)


def copy_fixture(tmp_path):
    dest = tmp_path / "lama"
    shutil.copytree(FIXTURE, dest)
    return dest


# ---------------------------------------------------------------------------------------------


def test_scores_match_hand_computed_values(biased_base, tmp_path):
    results, preds = run(["--roberta-dir", biased_base, "--data", FIXTURE, "--corpus", "TREx"], tmp_path / "o")
    n_cand = results["candidates"]["size"]
    rel = results["relations"]
    # P19: Honolulu 5th, Warsaw 4th, London 2nd, Paris 1st; the repeated Obama fact and the
    # two-word object are counted skips
    assert rel["P19"]["n"] == 4 and rel["P19"]["p@1"] == 0.25 and rel["P19"]["p@10"] == 1.0
    assert rel["P19"]["mrr"] == pytest.approx((1 / 5 + 1 / 4 + 1 / 2 + 1) / 4)
    assert rel["P19"]["skipped"] == {"duplicate_fact": 1, "object_not_single_token": 1}
    # P36: Paris 1st, Berlin 3rd, London 2nd, Warsaw 4th
    assert rel["P36"]["p@1"] == 0.25 and rel["P36"]["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 2 + 1 / 4) / 4)
    # P103: English scores below every other candidate; P17 (negated/misprimed file): Germany 6th
    assert rel["P103"] == {**rel["P103"], "n": 1, "p@1": 0.0, "p@10": 0.0}
    assert rel["P103"]["mrr"] == pytest.approx(1 / n_cand)
    assert rel["P17"]["p@1"] == 0.0 and rel["P17"]["p@10"] == 1.0 and rel["P17"]["mrr"] == pytest.approx(1 / 6)
    assert results["macro_p@1"] == pytest.approx((0.25 + 0.25 + 0 + 0) / 4)
    assert results["n_facts"] == 10 and results["skipped"] == {"duplicate_fact": 1, "object_not_single_token": 1}
    by_id = {p["id"]: p for p in preds}
    assert by_id["p19-1"]["query"] == "Obama was born in [MASK] ."
    assert by_id["p19-1"]["topk"][:6] == ["Paris", "London", "Berlin", "Warsaw", "Honolulu", "Germany"]
    assert (by_id["p19-1"]["rank"], by_id["p19-4"]["rank"], by_id["p19-4"]["correct"]) == (5, 1, True)
    assert len(by_id["p19-1"]["topk"]) == 10
    md = open(tmp_path / "o" / "results.md").read()
    assert "| P19 | place of birth | 4 | 25.0 | 25.0 | 100.0 | 48.8 |" in md
    # chance, the majority baseline, over the facts probed: the skipped repeat of Obama -> Honolulu does not
    # count (with it, Honolulu would be 2 of 5 = 0.4); P103 and P17 probe one fact each
    assert (rel["P19"]["majority"], rel["P36"]["majority"], rel["P103"]["majority"], rel["P17"]["majority"]) == (0.25, 0.25, 1.0, 1.0)
    assert results["macro_majority"] == pytest.approx((0.25 + 0.25 + 1 + 1) / 4)
    assert "| **macro (4 relations)** | | 10 | **12.5** | 62.5 |" in md


def test_common_vocab_restricts_candidates_and_skips_objects(biased_base, tmp_path):
    vocab = tmp_path / "common.txt"
    vocab.write_text("Berlin\nWarsaw\nHonolulu\nNotAWordHere\n")
    results, preds = run(["--roberta-dir", biased_base, "--data", FIXTURE, "--corpus", "TREx", "--common-vocab", vocab],
                         tmp_path / "o")
    assert results["candidates"]["size"] == 3 and results["candidates"]["common_vocab_words_not_single_tokens"] == 1
    by_id = {p["id"]: p for p in preds}
    assert set(by_id) == {"p19-1", "p19-2", "p36-2", "p36-4"}
    assert by_id["p19-1"]["topk"] == ["Berlin", "Warsaw", "Honolulu"] and by_id["p19-1"]["rank"] == 3
    assert results["skipped"] == {"object_not_in_common_vocab": 7, "duplicate_fact": 1}


def test_other_corpora_and_evidence_mode(biased_base, tmp_path):
    g, g_preds = run(["--roberta-dir", biased_base, "--data", FIXTURE, "--corpus", "Google_RE"], tmp_path / "g")
    assert g["relations"]["place_of_birth"]["n"] == 1  # Curie -> Warsaw; Turing's fact is judged "no"
    assert g["relations"]["place_of_birth"]["skipped"] == {"negative_judgments": 1}
    assert [p["query"] for p in g_preds if p["relation"] == "place_of_birth"] == ["Curie was born in [MASK] ."]
    c, c_preds = run(["--roberta-dir", biased_base, "--data", FIXTURE, "--corpus", "ConceptNet"], tmp_path / "c")
    assert c["queries"] == "evidence" and c["relations"]["test"]["n"] == 2
    assert {p["query"] for p in c_preds} == {"A bird can [MASK] .", "The quick brown fox can [MASK] over the dog ."}
    s, _ = run(["--roberta-dir", biased_base, "--data", FIXTURE, "--corpus", "Squad"], tmp_path / "s")
    assert s["relations"]["test"]["p@1"] == 0.5  # Paris first, Honolulu fifth
    e, e_preds = run(["--roberta-dir", biased_base, "--data", FIXTURE, "--corpus", "TREx", "--evidence"], tmp_path / "e")
    assert e["relations"]["P36"]["skipped"] == {"no_mask": 1}  # its evidence names the object
    assert {p["query"] for p in e_preds if p["id"] in ("p19-1", "p19-5")} == {"Obama was born in [MASK] , Hawaii .",
                                                                               "Obama came from [MASK] ."}
    assert "duplicate_fact" not in e["skipped"]  # evidence mode keeps every sentence of a fact pair
    with pytest.raises(SystemExit, match="Squad has no templates"):
        main(["lama", "--roberta-dir", biased_base, "--data", FIXTURE, "--corpus", "Squad", "--templates", "--out", str(tmp_path)])


def test_sentencepiece_query_pieces(probe_base):
    from kadapter_fairseq.hub import KAdapterHub
    from kadapter_fairseq.probe.lama import Vocabulary

    hub = KAdapterHub.from_pretrained(probe_base)
    vocab = Vocabulary(hub.dictionary, hub.bpe)
    pieces = [hub.dictionary[i] for i in vocab.encode_sentence("Turing (born [MASK]).", first=True)]
    # the mask carries the word's own boundary; text glued to it gets none
    assert pieces[0] == "<s>" and pieces[-1] == "</s>"
    i = pieces.index("<mask>")
    assert pieces[i + 1:] == [")", ".", "</s>"] and not pieces[i - 1].startswith("\u2581")
    assert vocab.object_candidate("Paris")[1] is None
    assert vocab.object_candidate("New Amsterdam") == (None, "object_not_single_token")


def test_zero_adapter_gives_the_base_predictions(probe_base, tmp_path):
    zero = save_adapter(probe_base, tmp_path / "zero.pt", up_std=0)
    args = ["--roberta-dir", probe_base, "--data", FIXTURE, "--corpus", "TREx"]
    base, base_preds = run(args, tmp_path / "base")
    both, preds = run(args + ["--adapters", f"fac={zero}", "--compare"], tmp_path / "cmp")
    assert [(p["topk"], p["rank"]) for p in preds] == [(p["without_adapters"]["topk"], p["without_adapters"]["rank"]) for p in preds]
    assert [(p["id"], p["topk"], p["rank"]) for p in preds] == [(p["id"], p["topk"], p["rank"]) for p in base_preds]
    assert both["macro_p@1"] == both["without_adapters"]["macro_p@1"] == base["macro_p@1"]
    assert both["disagreements"] == 0
    # the control: an adapter that does contribute changes the predictions
    loud = save_adapter(probe_base, tmp_path / "loud.pt", up_std=1.0)
    _, loud_preds = run(args + ["--adapters", f"fac={loud}", "--compare"], tmp_path / "loud")
    assert any(p["topk"] != p["without_adapters"]["topk"] for p in loud_preds)
    md = open(tmp_path / "loud" / "results.md").read()
    assert "## With and without the adapters (P@1)" in md and "Table 6 view" in md


def test_concat_fusion_uses_the_saved_fusion(probe_base, tmp_path):
    from kadapter_fairseq.hub import KAdapterHub

    plain = save_adapter(probe_base, tmp_path / "plain.pt", up_std=1.0, fusion="concat")
    msg = error_of(["--roberta-dir", probe_base, "--data", FIXTURE, "--corpus", "TREx", "--adapters", f"fac={plain}",
                    "--fusion", "concat"], tmp_path)
    assert str(plain) in msg and "no concat-fusion weights" in msg
    fused = save_adapter(probe_base, tmp_path / "fused.pt", up_std=1.0, fusion="concat", include_fusion=True)
    # the same adapter with other fusion weights: only the fusion can make the two runs differ
    hub = KAdapterHub.from_pretrained(probe_base, adapters={"fac": fused}, fusion="concat", require_fusion=True)
    torch.manual_seed(5)
    torch.nn.init.normal_(hub.model.fusion.proj["fac"].weight, std=0.5)
    other = tmp_path / "other.pt"
    hub.save_adapters(str(other), include_fusion=True)
    args = ["--roberta-dir", probe_base, "--data", FIXTURE, "--corpus", "TREx", "--fusion", "concat"]
    results, preds = run(args + ["--adapters", f"fac={fused}"], tmp_path / "o")
    _, other_preds = run(args + ["--adapters", f"fac={other}"], tmp_path / "other")
    assert results["model"]["fusion"] == "concat" and results["n_facts"] == 10
    assert [p["id"] for p in preds] == [p["id"] for p in other_preds]
    assert any((p["topk"], p["rank"]) != (q["topk"], q["rank"]) for p, q in zip(preds, other_preds))

    # and the scores are the LM head over Linear(2H->H)([h_L ; a_K]) with the saved weights, at the mask
    from kadapter_fairseq.probe.lama import MaskedLMScorer, Vocabulary

    hub = KAdapterHub.from_pretrained(probe_base, adapters={"fac": fused}, fusion="concat", require_fusion=True)
    saved = torch.load(fused, weights_only=False)["fusion"]["state_dict"]
    vocab = Vocabulary(hub.dictionary, hub.bpe)
    tokens = vocab.encode_sentence("Obama was born in [MASK] .", first=True).unsqueeze(0)
    pos = int(tokens[0].eq(vocab.mask_idx).nonzero()[0])
    scores = MaskedLMScorer(hub)(tokens, torch.tensor([pos]))
    with torch.no_grad():
        _, extra = hub.model.extract_features(tokens)
        both = torch.cat([extra["base"][0, pos], extra["adapters"]["fac"][0, pos]])
        expected = hub.model.encoder.lm_head(both @ saved["proj.fac.weight"].T + saved["proj.fac.bias"])
    assert torch.allclose(scores["adapters"][0], expected, atol=1e-4)


def test_fusion_add_is_refused_with_the_new_name(probe_base, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["lama", "--roberta-dir", probe_base, "--data", FIXTURE, "--corpus", "TREx", "--fusion", "add",
              "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "now called `delta`" in err and "--fusion delta" in err


def _former_add_readout(hub, tokens, positions):
    """The probe's scores as its former `add` readout computed them (before the model had a delta
    fusion): h_L + Σ (a_K − s_K) at the mask, s_K from the adapter's skip connections alone."""
    model = hub.model
    rows = torch.arange(tokens.size(0))
    with torch.no_grad():
        _, extra = model.extract_features(tokens)
        feature = extra["base"][rows, positions]
        for name, adapter in model.adapters.items():
            skip = None
            for plug, layer in zip(adapter.cfg.plug_layers, adapter.layers):
                hidden = extra["inner_states"][plug][positions, rows]
                skip = hidden if skip is None else hidden + skip
            feature = feature + extra["adapters"][name][rows, positions] - skip
        return model.encoder.lm_head(feature)


def test_delta_fusion_gives_the_former_add_readouts_results(probe_base, tmp_path):
    """The readout moved from the probe into the model (fusion `delta`): same scores up to float
    rounding, and the same top-k and ranks on every probed fact."""
    from kadapter_fairseq.hub import KAdapterHub
    from kadapter_fairseq.probe.lama import MaskedLMScorer, Vocabulary, build_queries, pad, read_corpus, run_queries

    loud = save_adapter(probe_base, tmp_path / "loud.pt", up_std=1.0)
    hub = KAdapterHub.from_pretrained(probe_base, adapters={"fac": loud}, fusion="delta")
    vocab = Vocabulary(hub.dictionary, hub.bpe)
    queries, _ = build_queries(read_corpus(FIXTURE, "TREx", True), vocab, True, hub.model.max_positions())
    scorer = MaskedLMScorer(hub)

    class Former:
        def __call__(self, tokens, positions, base=True, adapted=True):
            return {"adapters": _former_add_readout(hub, tokens, positions)}

    now = run_queries(queries, scorer, vocab, 10, 4, ["adapters"])
    before = run_queries(queries, Former(), vocab, 10, 4, ["adapters"])
    assert [now[id(q)] for q in queries] == [before[id(q)] for q in queries]
    tokens, positions = pad(queries, hub.dictionary.pad())
    assert torch.allclose(scorer(tokens, positions, base=False)["adapters"], _former_add_readout(hub, tokens, positions), atol=1e-5)
    results, preds = run(["--roberta-dir", probe_base, "--data", FIXTURE, "--corpus", "TREx", "--adapters", f"fac={loud}"],
                         tmp_path / "cli")
    assert results["model"]["fusion"] == "delta"
    assert {p["id"]: (p["topk"], p["rank"]) for p in preds} == {q.fact.id: before[id(q)]["adapters"] for q in queries}


def test_bf16_probe_stores_the_model_in_bf16_and_scores_in_fp32(probe_base, tmp_path):
    from kadapter_fairseq.hub import KAdapterHub
    from kadapter_fairseq.probe.lama import MaskedLMScorer, Vocabulary, build_queries, pad, read_corpus

    loud = save_adapter(probe_base, tmp_path / "loud.pt", up_std=1.0)
    args = ["--roberta-dir", probe_base, "--data", FIXTURE, "--corpus", "TREx", "--adapters", f"fac={loud}", "--compare"]
    results, preds = run(args + ["--bf16"], tmp_path / "bf16")
    assert results["model"]["precision"] == "bf16" and results["provenance"]["dtype"] == "bf16"
    assert results["n_facts"] == 10

    fp32 = KAdapterHub.from_pretrained(probe_base, adapters={"fac": loud}, fusion="delta")
    bf16 = KAdapterHub.from_pretrained(probe_base, adapters={"fac": loud}, fusion="delta", precision="bf16")
    # stored once in bf16, every weight: the cast of the fp32 weights, nothing recomputed per call
    fp32_sd = fp32.model.state_dict()
    for key, value in bf16.model.state_dict().items():
        if value.is_floating_point():
            assert value.dtype == torch.bfloat16 and torch.equal(value, fp32_sd[key].to(torch.bfloat16)), key
    # the vocabulary scores come from an fp32 copy of the LM head, equal to the fp32 model's
    for key, value in bf16.lm_head.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, fp32.model.encoder.lm_head.state_dict()[key]), key
    vocab = Vocabulary(fp32.dictionary, fp32.bpe)
    queries, _ = build_queries(read_corpus(FIXTURE, "TREx", True), vocab, True, fp32.model.max_positions())
    tokens, positions = pad(queries, fp32.dictionary.pad())
    low, high = MaskedLMScorer(bf16)(tokens, positions), MaskedLMScorer(fp32)(tokens, positions)
    for side in ("base", "adapters"):
        assert low[side].dtype == torch.float32
        # bf16 keeps 8 bits of mantissa: the scores move by a few hundredths of their spread, not more
        spread = high[side].std().item()
        assert (low[side] - high[side]).abs().max().item() < 0.1 * spread
        assert not torch.equal(low[side], high[side])  # the model really ran in bf16
        assert (low[side].argmax(1) == high[side].argmax(1)).float().mean().item() >= 0.8


def test_uhn_filters(biased_base, probe_base, tmp_path):
    data = tmp_path / "uhn"
    (data / "TREx").mkdir(parents=True)
    shutil.copy(os.path.join(FIXTURE, "relations.jsonl"), data)
    facts = {
        "P19": [("string", "Paris Hilton", "Paris"),  # "paris" is in "paris hilton"
                ("name", "Jean Dupont", "London"),  # the base's top 3 for any name: Paris, London, Berlin
                ("kept", "Obama", "Honolulu")],
        "P36": [("not-a-person", "England", "London")],  # top-3 too, but P36 is no person relation
    }
    for rel, rows in facts.items():
        with open(data / "TREx" / f"{rel}.jsonl", "w") as f:
            for uid, sub, obj in rows:
                f.write(json.dumps({"uuid": uid, "sub_label": sub, "obj_label": obj, "predicate_id": rel}) + "\n")
    results, preds = run(["--roberta-dir", biased_base, "--data", data, "--corpus", "TREx", "--uhn"], tmp_path / "o")
    assert sorted(p["id"] for p in preds) == ["kept", "not-a-person"]
    assert results["uhn_removed"] == {"string_match": 1, "person_name": 1}
    assert results["relations"]["P19"]["uhn_removed"] == {"string_match": 1, "person_name": 1}
    # another judge: the random probe base ranks other names first, so the name filter keeps Jean Dupont
    judged, preds = run(["--roberta-dir", biased_base, "--data", data, "--corpus", "TREx", "--uhn", "--uhn-model", probe_base],
                        tmp_path / "judge")
    assert judged["uhn_removed"] == {"string_match": 1}
    assert sorted(p["id"] for p in preds) == ["kept", "name", "not-a-person"]

    from kadapter_fairseq.probe.uhn import name_queries, string_match

    assert string_match("Paris Hilton", "paris") and not string_match("Obama", "Honolulu")
    assert name_queries("P27", "Jean Dupont") == ["Jean is a common name in the following country : [MASK] .",
                                                  "Dupont is a common name in the following country : [MASK] ."]
    assert name_queries("P36", "England") == []


def test_bad_input_stops_naming_file_and_line(biased_base, tmp_path):
    base = ["--roberta-dir", biased_base, "--corpus", "TREx"]

    data = copy_fixture(tmp_path / "a")  # a relation missing from relations.jsonl
    lines = (data / "relations.jsonl").read_text().splitlines()
    (data / "relations.jsonl").write_text("\n".join(l for l in lines if '"P103"' not in l) + "\n")
    msg = error_of(base + ["--data", data], tmp_path)
    assert f"{data / 'TREx' / 'P103.jsonl'}:1: relation P103 is not in" in msg

    data = copy_fixture(tmp_path / "b")  # a fact without obj_label
    with open(data / "TREx" / "P36.jsonl", "a") as f:
        f.write(json.dumps({"uuid": "x", "sub_label": "Spain", "predicate_id": "P36"}) + "\n")
    assert f"{data / 'TREx' / 'P36.jsonl'}:5: no 'obj_label'" in error_of(base + ["--data", data], tmp_path)

    data = copy_fixture(tmp_path / "c")  # a template without [Y]
    text = (data / "relations.jsonl").read_text().replace("The capital of [X] is [Y] .", "The capital of [X] .")
    (data / "relations.jsonl").write_text(text)
    msg = error_of(base + ["--data", data], tmp_path)
    assert f"{data / 'relations.jsonl'}:2: template" in msg and "[Y]" in msg

    data = copy_fixture(tmp_path / "d")  # an empty corpus directory
    shutil.rmtree(data / "TREx")
    (data / "TREx").mkdir()
    assert f"{data / 'TREx'}: empty corpus directory" in error_of(base + ["--data", data], tmp_path)

    data = copy_fixture(tmp_path / "e")  # a line that is not JSON
    with open(data / "TREx" / "P103.jsonl", "a") as f:
        f.write("{not json\n")
    assert f"{data / 'TREx' / 'P103.jsonl'}:2: not valid JSON" in error_of(base + ["--data", data], tmp_path)

    assert "--compare needs --adapters" in error_of(base + ["--data", FIXTURE, "--compare"], tmp_path)


def test_hub_reads_each_adapter_file_once(tiny_base, tmp_path, monkeypatch):
    from kadapter_fairseq import checkpoint_utils as ku
    from kadapter_fairseq.hub import KAdapterHub

    hub = KAdapterHub.from_pretrained(tiny_base, adapters={"fac": None, "lin": None}, arch="roberta_kadapter_tiny")
    hub.model.register_kadapter_head("rel", "sentence", 3)
    hub.save_adapters(str(tmp_path / "fac.pt"), names=["fac"], include_heads=True)
    hub.save_adapters(str(tmp_path / "lin.pt"), names=["lin"])
    reads = []
    real = ku.load_adapter_file
    monkeypatch.setattr(ku, "load_adapter_file", lambda path: reads.append(str(path)) or real(path))
    again = KAdapterHub.from_pretrained(tiny_base, adapters={"fac": str(tmp_path / "fac.pt"), "lin": str(tmp_path / "lin.pt")})
    assert sorted(reads) == sorted([str(tmp_path / "fac.pt"), str(tmp_path / "lin.pt")])
    assert "rel" in again.model.heads  # heads still come from the file
    for name in ("fac", "lin"):
        for key, value in hub.model.adapters[name].state_dict().items():
            assert torch.equal(value, again.model.adapters[name].state_dict()[key]), key


def test_batched_scores_equal_the_models_own_output(probe_base, tmp_path):
    """Padding, batching and the mask position change nothing: each row's scores are the LM
    head's output for that query alone; the delta fusion adds a_K minus the sum of the hidden
    states its skip connections carry."""
    from kadapter_fairseq.hub import KAdapterHub
    from kadapter_fairseq.probe.lama import Fact, MaskedLMScorer, Query, Vocabulary, pad

    path = save_adapter(probe_base, tmp_path / "a.pt", up_std=1.0)
    hub = KAdapterHub.from_pretrained(probe_base, adapters={"fac": path}, fusion="delta")
    vocab = Vocabulary(hub.dictionary, hub.bpe)
    texts = ["Obama was born in [MASK] .", "[MASK] is the capital of Germany and the capital of France .", "A [MASK] can fly ."]
    queries = []
    for text in texts:
        tokens = vocab.encode_sentence(text, first=True)
        queries.append(Query(Fact(text, "", "", "", [], ("", 0)), text, tokens, tokens.eq(vocab.mask_idx).nonzero()[0].item(), 0))
    tokens, positions = pad(queries, hub.dictionary.pad())
    assert tokens.eq(hub.dictionary.pad()).any()  # the batch is padded
    scores = MaskedLMScorer(hub)(tokens, positions)
    model = hub.model
    plugs = model.adapters["fac"].cfg.plug_layers
    with torch.no_grad():
        for i, q in enumerate(queries):
            alone = q.tokens.unsqueeze(0)
            full_lm, _ = model.encoder(alone)  # fairseq's own masked-LM output over every position
            assert torch.allclose(scores["base"][i], full_lm[0, q.mask_pos], atol=1e-5)
            _, extra = model.extract_features(alone)
            own = extra["adapters"]["fac"][0, q.mask_pos] - sum(extra["inner_states"][p][q.mask_pos, 0] for p in plugs)
            expected = model.encoder.lm_head(extra["base"][0, q.mask_pos] + own)
            assert torch.allclose(scores["adapters"][i], expected, atol=1e-4)
            assert not torch.allclose(scores["adapters"][i], scores["base"][i], atol=1e-3)
