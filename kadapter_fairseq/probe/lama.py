"""LAMA probing: read LAMA's released layout, build its queries, rank candidate objects.

The rules are LAMA's own (docs/reference/lama.md; ``scripts/batch_eval_KB_completion.py`` of facebookresearch/LAMA):

* a query is the relation's template with ``[X]`` = the subject label and ``[Y]`` = the mask
  (templates mode), or the fact's own ``masked_sentences`` joined into one input, ``<s> s1 </s> s2 </s>``
  (evidence mode); only the first mask is scored;
* the object must be one token of the base's vocabulary as it appears after a space, and in
  the candidate vocabulary; other facts are skipped and counted by reason;
* in templates mode a relation's duplicate (subject, object) pairs are probed once;
* Google-RE facts whose human judgments say "no" more often than "yes" are skipped;
* only candidates are ranked; P@1 is macro-averaged over relations.

Departures, all deliberate: the rank is the gold object's rank among *all* candidates (LAMA
stops counting at 10,000, which changes nothing for vocabularies of that size or less); a
Google-RE relation is named by its file (``place_of_birth``).
"""
import glob
import json
import os
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from ..errors import ConfigError, DataError

MASK = "[MASK]"
CORPORA = ("Google_RE", "TREx", "ConceptNet", "Squad")
# LAMA keeps these three in its experiment script, not in relations.jsonl
GOOGLE_RE_TEMPLATES = {
    "place_of_birth": "[X] was born in [Y] .",
    "date_of_birth": "[X] (born [Y]).",
    "place_of_death": "[X] died in [Y] .",
}
# T-REx relations LAMA's release lacks in TREx/ but the negated/misprimed release has (no evidences)
TREX_EXTRA_DIR = "TREx_missing_relations_from_negated_misprimed"
SKIP_REASONS = {
    "object_not_in_common_vocab": "the object is not in the --common-vocab list",
    "object_not_single_token": "the object is not one token of the base's vocabulary (after a space)",
    "negative_judgments": "Google-RE: more 'no' than 'yes' human judgments (LAMA skips these)",
    "duplicate_fact": "templates mode: the same (subject, object) pair again in this relation",
    "no_evidence": "evidence mode: the fact has no masked sentence",
    "no_mask": "the query has no [MASK]",
    "mask_beyond_max_positions": "the first [MASK] lies beyond the base's maximum length",
}


@dataclass
class Relation:
    name: str
    template: Optional[str] = None
    label: str = ""
    type: str = ""


@dataclass
class Fact:
    id: str
    relation: str
    sub_label: str
    obj_label: str
    masked_sentences: List[str]
    where: Tuple[str, int]  # file, 1-based line
    judgments: Optional[list] = None


@dataclass
class Corpus:
    name: str
    relations: "OrderedDict[str, Relation]"
    facts: List[Fact]
    files: List[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# reading LAMA's layout


def read_jsonl(path) -> Iterator[Tuple[int, dict]]:
    """(line number, record) for every non-blank line; a line that is not a JSON object stops."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, lineno, f"not valid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise DataError(path, lineno, "expected a JSON object")
            yield lineno, record


def _text(record, key, path, lineno, required=True) -> Optional[str]:
    value = record.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise DataError(path, lineno, f"no {key!r}")
        return None
    if not isinstance(value, str):
        raise DataError(path, lineno, f"{key!r} must be a string, got {type(value).__name__}")
    return value


def check_template(template: str, path, lineno):
    for slot in ("[X]", "[Y]"):
        if template.count(slot) != 1:
            raise DataError(path, lineno, f"template {template!r} must contain {slot} exactly once")


def read_relations(path) -> "OrderedDict[str, Relation]":
    """LAMA's ``relations.jsonl``: ``relation``, ``template`` (with [X] and [Y]), ``label``, ``type``."""
    if not os.path.isfile(path):
        raise DataError(path, None, "relations file not found (LAMA's data/relations.jsonl)")
    out = OrderedDict()
    for lineno, r in read_jsonl(path):
        name = _text(r, "relation", path, lineno)
        template = _text(r, "template", path, lineno)
        check_template(template, path, lineno)
        if name in out:
            raise DataError(path, lineno, f"relation {name} is defined twice")
        out[name] = Relation(name, template, r.get("label") or "", r.get("type") or "")
    if not out:
        raise DataError(path, None, "no relations")
    return out


def _masked_sentences(record) -> List[str]:
    if isinstance(record.get("masked_sentences"), list):
        return [s for s in record["masked_sentences"] if isinstance(s, str)]
    return [e["masked_sentence"] for e in record.get("evidences") or [] if isinstance(e, dict) and e.get("masked_sentence")]


def read_facts(path, relation: str, subject_required=True) -> List[Fact]:
    facts = []
    for lineno, r in read_jsonl(path):
        obj = _text(r, "obj_label", path, lineno)
        sub = _text(r, "sub_label", path, lineno, required=False) or _text(r, "sub", path, lineno, required=False)
        if sub is None and subject_required:
            raise DataError(path, lineno, "no 'sub_label'")
        pred = r.get("predicate_id")
        if pred is not None and relation.startswith("P") and pred != relation:
            raise DataError(path, lineno, f"predicate_id {pred} in the file of relation {relation}")
        uid = r.get("uuid", r.get("id"))
        facts.append(
            Fact(
                id=str(uid) if uid is not None else f"{relation}:{lineno}",
                relation=relation,
                sub_label=sub or "",
                obj_label=obj,
                masked_sentences=_masked_sentences(r),
                where=(str(path), lineno),
                judgments=r.get("judgments"),
            )
        )
    return facts


def _fact_files(directory, pattern) -> List[str]:
    if not os.path.isdir(directory):
        raise DataError(directory, None, "corpus directory not found (LAMA's data/ layout: TREx/, Google_RE/, ConceptNet/, Squad/)")
    files = sorted(glob.glob(os.path.join(directory, pattern)))
    if not files:
        raise DataError(directory, None, f"empty corpus directory: no {pattern} fact files")
    return files


def read_corpus(data_dir, corpus: str, templates: bool) -> Corpus:
    """Every fact of one LAMA corpus, with the relation definitions its queries need."""
    if corpus not in CORPORA:
        raise ConfigError(f"--corpus must be one of {', '.join(CORPORA)}, got {corpus!r}")
    if templates and corpus in ("ConceptNet", "Squad"):
        raise ConfigError(f"{corpus} has no templates: its facts are probed with their own masked sentences (--evidence)")
    relations: "OrderedDict[str, Relation]" = OrderedDict()
    facts: List[Fact] = []
    files: List[str] = []
    if corpus == "TREx":
        rel_path = os.path.join(data_dir, "relations.jsonl")
        defined = read_relations(rel_path) if templates or os.path.isfile(rel_path) else OrderedDict()
        main = _fact_files(os.path.join(data_dir, "TREx"), "*.jsonl")
        extra_dir = os.path.join(data_dir, TREX_EXTRA_DIR)
        extra = sorted(glob.glob(os.path.join(extra_dir, "*.jsonl"))) if os.path.isdir(extra_dir) else []
        have = {_stem(p) for p in main}
        for path in main + [p for p in extra if _stem(p) not in have]:
            name = _stem(path)
            got = read_facts(path, name)
            if name not in defined and templates:
                line = got[0].where[1] if got else None
                raise DataError(path, line, f"relation {name} is not in {rel_path}: no template to probe it with")
            relations[name] = defined.get(name) or Relation(name)
            facts += got
            files.append(path)
    elif corpus == "Google_RE":
        for path in _fact_files(os.path.join(data_dir, "Google_RE"), "*_test.jsonl"):
            name = _stem(path)[: -len("_test")]
            got = read_facts(path, name)
            if templates and name not in GOOGLE_RE_TEMPLATES:
                raise DataError(path, got[0].where[1] if got else None,
                                f"no LAMA template for Google-RE relation {name} (known: {', '.join(GOOGLE_RE_TEMPLATES)})")
            relations[name] = Relation(name, GOOGLE_RE_TEMPLATES.get(name), name.replace("_", " "))
            facts += got
            files.append(path)
    else:  # ConceptNet, Squad: one test file, probed as one relation as LAMA does
        path = _fact_files(os.path.join(data_dir, corpus), "test.jsonl")[0]
        relations["test"] = Relation("test", None, corpus)
        facts += read_facts(path, "test", subject_required=False)
        files.append(path)
    if not facts:
        raise DataError(os.path.join(data_dir, corpus), None, "the corpus holds no facts")
    return Corpus(corpus, relations, facts, files)


def _stem(path) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def read_common_vocab(path) -> List[str]:
    """LAMA's ``common_vocab_*.txt``: one word a line."""
    if not os.path.isfile(path):
        raise DataError(path, None, "common vocabulary file not found")
    with open(path, encoding="utf-8") as f:
        words = [line.strip() for line in f if line.strip()]
    if not words:
        raise DataError(path, None, "empty common vocabulary")
    return words


# ---------------------------------------------------------------------------------------------
# the base's vocabulary and queries


class Vocabulary:
    """The base's whole-word tokens (a word as it appears after a space: GPT-2 ``Ġword``,
    sentencepiece ``▁word``) and the query encoder, for GPT-2 BPE and sentencepiece bases."""

    def __init__(self, dictionary, bpe, common_vocab: Optional[Sequence[str]] = None):
        from fairseq.data.encoders.sentencepiece_bpe import SentencepieceBPE

        self.dictionary = dictionary
        self.bpe = bpe
        self.sentencepiece = isinstance(bpe, SentencepieceBPE)
        self.mask_idx = dictionary.index("<mask>")
        if self.mask_idx == dictionary.unk():
            raise ConfigError("the base's dictionary has no <mask> symbol")
        self.word_index: Dict[str, int] = {}
        for idx in range(dictionary.nspecial, len(dictionary)):
            surface = self._surface(dictionary[idx])
            if surface and surface[0] == " " and surface[1:] and surface[1:].strip() == surface[1:]:
                self.word_index.setdefault(surface[1:], idx)
        self.common_unusable = 0
        if common_vocab is None:
            words = list(self.word_index)
        else:  # LAMA's intersection file: words that are no token of this base cannot be candidates
            words = [w for w in dict.fromkeys(common_vocab) if w in self.word_index]
            self.common_unusable = len(set(common_vocab)) - len(words)
        self.common = set(common_vocab) if common_vocab is not None else None
        self._objects: Dict[str, Tuple[Optional[int], Optional[str]]] = {}  # objects recur (countries, languages)
        self.candidates = torch.tensor([self.word_index[w] for w in words], dtype=torch.long)
        self.words = words
        self.position = {idx: i for i, idx in enumerate(self.candidates.tolist())}
        if not words:
            raise ConfigError("no candidate words: the base has no whole-word tokens in the candidate vocabulary")

    def _surface(self, symbol: str) -> Optional[str]:
        if self.sentencepiece:
            return symbol.replace("\u2581", " ")
        if not symbol.isdigit():  # GPT-2 dictionaries hold byte-level BPE ids; others are specials
            return None
        try:
            return self.bpe.bpe.decode([int(symbol)])
        except (KeyError, ValueError):
            return None

    def object_candidate(self, obj_label: str) -> Tuple[Optional[int], Optional[str]]:
        """(candidate position, None), or (None, skip reason)."""
        obj = obj_label.strip()
        if obj not in self._objects:
            self._objects[obj] = self._object_candidate(obj)
        return self._objects[obj]

    def _object_candidate(self, obj: str):
        if self.common is not None and any(w not in self.common for w in obj.split(" ")):
            return None, "object_not_in_common_vocab"
        pieces = self.bpe.encode(obj if self.sentencepiece else " " + obj).split()
        idx = self.dictionary.index(pieces[0]) if len(pieces) == 1 else None
        if idx not in self.position or self.words[self.position[idx]] != obj:
            return None, "object_not_single_token"
        return self.position[idx], None

    def _encode_span(self, span: str, after_mask: bool) -> List[str]:
        pieces = self.bpe.encode(span).split()
        # sentencepiece writes a word boundary at the start of every text it encodes; a span glued
        # to the mask before it (``[Y]).``) must not get one
        if self.sentencepiece and after_mask and not span[:1].isspace() and pieces and pieces[0].startswith("\u2581"):
            rest = pieces[0][1:]
            if not rest:
                pieces = pieces[1:]
            elif self.dictionary.index(rest) != self.dictionary.unk():
                pieces[0] = rest
        return pieces

    def encode_sentence(self, sentence: str, first: bool) -> torch.LongTensor:
        """``<s>`` (first sentence only) + pieces + ``</s>``, each span between masks encoded
        on its own as LAMA does, so that the mask stands for a whole word."""
        d = self.dictionary
        ids = [d.bos()] if first else []
        for i, span in enumerate(sentence.split(MASK)):
            if i:
                ids.append(self.mask_idx)
            span = span.rstrip()
            if span.strip():
                ids += [d.index(p) for p in self._encode_span(span, after_mask=i > 0)]
        ids.append(d.eos())
        return torch.tensor(ids, dtype=torch.long)


def template_query(template: str, sub_label: str) -> str:
    return template.replace("[X]", sub_label.strip()).replace("[Y]", MASK)


@dataclass
class Query:
    fact: Fact
    text: str
    tokens: torch.LongTensor
    mask_pos: int
    gold: int  # candidate position of the object


def build_queries(corpus: Corpus, vocab: Vocabulary, templates: bool, max_positions: int):
    """LAMA's queries for the facts that can be probed; the rest counted per relation by reason."""
    queries: List[Query] = []
    skipped: Dict[str, Counter] = {r: Counter() for r in corpus.relations}
    seen = set()
    for fact in corpus.facts:
        gold, reason = vocab.object_candidate(fact.obj_label)
        if reason is None and fact.judgments:
            yes = sum(1 for j in fact.judgments if isinstance(j, dict) and j.get("judgment") == "yes")
            if len(fact.judgments) - yes > yes:
                reason = "negative_judgments"
        if reason is None and templates:
            key = (fact.relation, fact.sub_label.strip(), fact.obj_label.strip())
            if key in seen:
                reason = "duplicate_fact"
            seen.add(key)
        if reason is None:
            sentences = [template_query(corpus.relations[fact.relation].template, fact.sub_label)] if templates else fact.masked_sentences
            if not sentences:
                reason = "no_evidence"
            else:
                tokens = torch.cat([vocab.encode_sentence(s, first=i == 0) for i, s in enumerate(sentences)])
                masks = tokens.eq(vocab.mask_idx).nonzero()
                if len(masks) == 0:
                    reason = "no_mask"
                elif masks[0].item() >= max_positions:
                    reason = "mask_beyond_max_positions"
                else:
                    queries.append(Query(fact, " ".join(sentences), tokens[:max_positions], masks[0].item(), gold))
        if reason is not None:
            skipped[fact.relation][reason] += 1
    return queries, skipped


# ---------------------------------------------------------------------------------------------
# scoring


class MaskedLMScorer:
    """The base's own masked-LM head at one masked position per row: over the base's last layer
    and over the model's fused feature, from one pass of the base.

    The fused feature is the model's own output fusion (``modules/fusion.py``), chosen when the
    hub was loaded: ``delta`` (the probe's default) reads h_L + Σ (a_K − s_K), each adapter's
    output minus what its skip connections alone carry (``KnowledgeAdapter.delta``), so an adapter
    whose up-projections are zero gives exactly the base's predictions; ``concat`` the fusion
    whose weights were saved in the adapter files. Scores are fp32 whatever the hub's precision
    (``KAdapterHub.masked_lm_logits``: an fp32 head), so bf16 rounding does not decide rankings.
    """

    def __init__(self, hub):
        self.hub = hub
        self.model = hub.model.eval()
        self.has_adapters = len(self.model.adapters) > 0

    @torch.no_grad()
    def __call__(self, tokens, positions, base=True, adapted=True) -> Dict[str, torch.Tensor]:
        model = self.model
        tokens, positions = tokens.to(self.hub.device), positions.to(self.hub.device)
        rows = torch.arange(tokens.size(0), device=tokens.device)
        out = {}
        if adapted and self.has_adapters:
            fused, extra = model.extract_features(tokens)
            last = extra["base"]
            out["adapters"] = self.hub.masked_lm_logits(fused[rows, positions])
        else:
            last, _ = model.encoder.extract_features(tokens)
        if base:
            out["base"] = self.hub.masked_lm_logits(last[rows, positions])
        return {side: scores.cpu() for side, scores in out.items()}


def rank_candidates(scores: torch.Tensor, candidates: torch.Tensor, gold: torch.Tensor, k: int):
    """Top-k candidate positions and the gold's rank (1 = top) per row. Ties are ordered by
    candidate position, the same order a stable sort gives, so rank 1 ⇔ top-1 is the gold."""
    cand = scores.index_select(1, candidates).float()
    order = torch.sort(cand, dim=1, descending=True, stable=True).indices[:, :k]
    g = cand.gather(1, gold.unsqueeze(1))
    before = torch.arange(cand.size(1)).unsqueeze(0) < gold.unsqueeze(1)
    rank = 1 + (cand > g).sum(1) + ((cand == g) & before).sum(1)
    return order, rank


def batches(queries: List[Query], batch_size: int):
    """Queries of similar length together, padded on the right."""
    order = sorted(range(len(queries)), key=lambda i: len(queries[i].tokens))
    for start in range(0, len(order), batch_size):
        yield [queries[i] for i in order[start : start + batch_size]]


def pad(queries: List[Query], pad_idx: int):
    width = max(len(q.tokens) for q in queries)
    tokens = torch.full((len(queries), width), pad_idx, dtype=torch.long)
    for i, q in enumerate(queries):
        tokens[i, : len(q.tokens)] = q.tokens
    return tokens, torch.tensor([q.mask_pos for q in queries])


def run_queries(queries: List[Query], scorer: MaskedLMScorer, vocab: Vocabulary, top_k: int, batch_size: int, sides: Sequence[str]):
    """``{id(query): {side: (topk words, rank)}}`` for each side in ``sides`` ("base", "adapters")."""
    out = {}
    pad_idx = vocab.dictionary.pad()
    for batch in batches(queries, batch_size):
        tokens, positions = pad(batch, pad_idx)
        scores = scorer(tokens, positions, base="base" in sides, adapted="adapters" in sides)
        gold = torch.tensor([q.gold for q in batch])
        for side in sides:
            order, rank = rank_candidates(scores[side], vocab.candidates, gold, top_k)
            for q, o, r in zip(batch, order.tolist(), rank.tolist()):
                out.setdefault(id(q), {})[side] = ([vocab.words[i] for i in o], r)
    return out


def top_words(texts: List[str], scorer: MaskedLMScorer, vocab: Vocabulary, k: int, batch_size: int) -> Dict[str, List[str]]:
    """The base's top-k candidate words for single-mask texts (the UHN name queries)."""
    queries = []
    for text in dict.fromkeys(texts):
        tokens = vocab.encode_sentence(text, first=True)
        queries.append(Query(Fact(text, "", "", "", [], ("", 0)), text, tokens, tokens.eq(vocab.mask_idx).nonzero()[0].item(), 0))
    ranked = run_queries(queries, scorer, vocab, k, batch_size, ["base"])
    return {q.text: ranked[id(q)]["base"][0] for q in queries}


def metrics(ranks: Sequence[int]) -> dict:
    n = len(ranks)
    if not n:
        return {"p@1": None, "p@10": None, "mrr": None, "n": 0}
    return {
        "p@1": sum(r == 1 for r in ranks) / n,
        "p@10": sum(r <= 10 for r in ranks) / n,
        "mrr": sum(1.0 / r for r in ranks) / n,
        "n": n,
    }


def macro(per_relation: Dict[str, dict], key: str) -> Optional[float]:
    """Mean over the relations that have probed facts (LAMA's and the paper's P@1)."""
    values = [m[key] for m in per_relation.values() if m["n"]]
    return sum(values) / len(values) if values else None
