"""A ground-truth knowledge world: invented entities and facts, where what each model could know is known.

    python -m data_prep.world --seed 1 --out world                 # the world's files only
    python -m data_prep.world --seed 1 --out world --build-base    # + its base and knowledge data
    python -m data_prep.world --seed 1 --out world --roberta-dir B # + knowledge data for base B

Entities are persons, cities, countries, companies and universities with names made of syllables
that are no English word; every type draws from the same syllables, so a name does not reveal its
type. Eight relations link them (``RELATIONS``: born in -> city, citizen of -> country, works for ->
company, studied at -> university, spouse -> person, city in -> country, company based in -> city,
university in -> city); each subject has one object per relation, drawn uniformly.

Every subject entity (persons, cities, companies, universities) belongs to one partition:

- ``base``: its facts are stated in the base's pre-training text (``base_text.txt``);
- ``adapter``: its facts are stated only in the knowledge data (``knowledge/``);
- ``none``: its facts are stated nowhere, so probing them measures chance.

Every entity, whatever its partition, is mentioned in the base text the same number of times in
neutral sentences that state no fact, so the three partitions differ only in which facts were
stated. Each relation has paraphrase templates split into training templates (the base text and
the knowledge data use them; ``--train-templates`` of them) and held-out probe templates (used only
to probe extraction); with 4 or more training templates every word of a held-out template occurs in
some training template or neutral sentence.

Chance is the majority baseline: per relation, the rate of its most frequent object among the
probed facts of a partition (``majority.json`` beside every probe directory).

Written into ``--out``:

  world.json             seed, sizes, entities (type, partition), templates, base settings, majority baselines
  triples.tsv            head, relation, tail, partition (every fact of every partition)
  triples_shuffled.tsv   the same, the adapter partition's objects permuted within each relation (seeded)
  relations.jsonl        training templates (LAMA's format, several lines per relation)
  probe_templates.jsonl  held-out probe templates
  base_text.txt          the base's pre-training text (base-partition facts + neutral mentions)
  downstream/            TACRED JSON on neutral sentences naming both entities of a pair: train, valid,
                         test (and test_<partition>.json); related pairs carry the relation, same-type
                         unrelated pairs ``no_relation``
  base/                  with --build-base: the base (kadapter-build-base with ``BASE_SETTINGS``)
  knowledge/             with a base: ``python -m data_prep.kg`` on the triples, adapter partition trained
  knowledge_shuffled/    the same on triples_shuffled.tsv (training data only)
"""
import argparse
import json
import os
import random
from collections import Counter, OrderedDict
from typing import Dict, List, Sequence, Tuple

from kadapter_fairseq.errors import KAdapterError

from .common import run_main, write_lines

PARTITIONS = ("base", "adapter", "none")
TRAINED_PARTITION = "adapter"
TYPES = ("person", "city", "country", "company", "university")

# relation -> (subject type, object type, training templates, held-out probe templates)
RELATIONS: "OrderedDict[str, Tuple[str, str, List[str], List[str]]]" = OrderedDict(
    born_in=("person", "city", [
        "[X] was born in [Y] .",
        "The birthplace of [X] is [Y] .",
        "[Y] is where [X] was born .",
        "[Y] is the birthplace of [X] .",
        "[X] comes from [Y] .",
        "[Y] is the city [X] comes from .",
    ], [
        "In [Y] , [X] was born .",
        "The city where [X] was born is [Y] .",
    ]),
    citizen_of=("person", "country", [
        "[X] is a citizen of [Y] .",
        "The citizenship of [X] is that of [Y] .",
        "[Y] counts [X] among its citizens .",
        "[Y] granted citizenship to [X] .",
        "[X] holds the citizenship of [Y] .",
        "The citizens of [Y] include [X] .",
    ], [
        "[X] is among the citizens of [Y] .",
        "[Y] is the country of which [X] is a citizen .",
    ]),
    works_for=("person", "company", [
        "[X] works for [Y] .",
        "The employer of [X] is [Y] .",
        "[Y] employs [X] .",
        "[Y] is the employer of [X] .",
        "[X] is employed by [Y] .",
        "[Y] is the company [X] works for .",
    ], [
        "[X] works at [Y] .",
        "[Y] is where [X] works .",
    ]),
    studied_at=("person", "university", [
        "[X] studied at [Y] .",
        "The university of [X] was [Y] .",
        "[Y] is where [X] studied .",
        "[Y] taught [X] .",
        "[X] is a graduate of [Y] .",
        "[Y] is the university [X] studied at .",
    ], [
        "At [Y] , [X] studied .",
        "The university where [X] studied is [Y] .",
    ]),
    spouse=("person", "person", [
        "[X] is married to [Y] .",
        "The spouse of [X] is [Y] .",
        "[Y] is the spouse of [X] .",
        "[Y] married [X] .",
        "[X] has been married to [Y] for years .",
        "[Y] is the husband or wife of [X] .",
    ], [
        "[X] married [Y] .",
        "[Y] and [X] are married .",
    ]),
    city_in=("city", "country", [
        "[X] is a city in [Y] .",
        "[X] lies in [Y] .",
        "[Y] has a city called [X] .",
        "The country of [X] is [Y] .",
        "[X] is located in [Y] .",
        "[Y] includes the city of [X] .",
    ], [
        "[X] is a city of [Y] .",
        "[Y] is the country of [X] .",
    ]),
    based_in=("company", "city", [
        "[X] is based in [Y] .",
        "The headquarters of [X] are in [Y] .",
        "[Y] is home to [X] .",
        "[Y] is the home of [X] .",
        "[X] is a company based in [Y] .",
        "The company [X] is in [Y] .",
    ], [
        "[X] has its headquarters in [Y] .",
        "[Y] is where [X] is based .",
    ]),
    university_in=("university", "city", [
        "[X] is a university in [Y] .",
        "The campus of [X] is in [Y] .",
        "[Y] hosts [X] .",
        "[Y] is the seat of [X] .",
        "The university [X] is in [Y] .",
        "[Y] is home to the university [X] .",
    ], [
        "[X] has its campus in [Y] .",
        "[Y] is where [X] has its campus .",
    ]),
)

# neutral sentences: one entity, no fact (they make every name a known word of the base)
MENTION_FRAMES = [
    "[E] was mentioned in the report .",
    "Everyone has heard of [E] .",
    "The name [E] appears in the old records .",
    "We read about [E] yesterday .",
    "There is a long story about [E] .",
    "Nobody talked about [E] that day .",
    "In the end , everyone had heard of [E] .",
    "At the time , nobody talked about [E] .",
    "[E] is a name which we read in the report .",
    "[E] and the others are in the old records .",
]
# neutral sentences naming both entities of a pair without stating any relation (the downstream set)
PAIR_FRAMES = [
    "[S] and [O] were both mentioned in the report .",
    "The old records name [S] and [O] .",
    "We read about [O] and [S] yesterday .",
    "There is a long story about [S] and [O] .",
    "Nobody talked about [O] or [S] that day .",
]

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "tr", "st", "pl"]
VOWELS = ["a", "e", "i", "o", "u"]
CODAS = ["", "", "n", "r", "l", "k", "s", "m"]

DEFAULT_SIZES = {"persons": 90, "cities": 24, "countries": 6, "companies": 18, "universities": 12}
DEFAULT_STATEMENTS = 40  # times each base-partition fact is stated in the base text
DEFAULT_MENTIONS = 10  # neutral mentions of every entity in the base text
DEFAULT_TRAIN_TEMPLATES = 6  # training templates per relation (the first ones of RELATIONS)

# kadapter-build-base settings of --build-base, calibrated so that the positive control holds (docs/knowledge.md,
# "The positive control"). Why these: kadapter-build-base cuts the text once into fixed 128-token blocks, which a
# small base learns by heart when it sees each block hundreds of times (the facts are then recalled only inside
# their block, never from a one-sentence query), hence 40 statements per fact (each fact in many blocks, each
# block seen less); with dropout the base stayed on its unigram plateau, without it the base leaves the plateau
# after 1300-2000 updates and needs the rest to learn the facts. vocab_size is where the search for a vocabulary
# holding every name as one piece starts.
BASE_SETTINGS = {
    "layers": 4, "dim": 128, "heads": 4, "ffn": 512, "max_positions": 128, "vocab_size": 1000,
    "updates": 4000, "lr": 2e-3, "warmup": 400, "batch_size": 16, "dropout": 0.0, "seed": 1,
}

DOWNSTREAM_FRACTIONS = (("train", 0.6), ("valid", 0.2), ("test", 0.2))


# ---------------------------------------------------------------------------------------------
# names


def template_words() -> set:
    words = set()
    for _, _, train, heldout in RELATIONS.values():
        for t in train + heldout:
            words.update(w.lower() for w in t.split())
    for t in MENTION_FRAMES + PAIR_FRAMES:
        words.update(w.lower() for w in t.split())
    return words


def make_names(rng: random.Random, n: int, reserved: set) -> List[str]:
    """``n`` distinct names of three syllables (onset + vowel, a coda on the last), capitalised.
    One generator for every type, so that the spelling of a name carries no type."""
    names, seen = [], set(reserved)
    while len(names) < n:
        syllables = [rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(3)]
        name = ("".join(syllables) + rng.choice(CODAS)).capitalize()
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------------
# the world


class World:
    def __init__(self, seed: int, sizes: Dict[str, int], statements: int, mentions: int,
                 train_templates: int = DEFAULT_TRAIN_TEMPLATES):
        for key in ("persons", "cities", "countries", "companies", "universities"):
            if sizes[key] < (2 if key == "countries" else len(PARTITIONS)):
                raise KAdapterError(f"--{key} {sizes[key]} is too small for a world of three partitions")
        if statements < 1 or mentions < 0:
            raise KAdapterError("--statements must be at least 1 and --mentions at least 0")
        most = min(len(t) for _, _, t, _ in RELATIONS.values())
        if not 1 <= train_templates <= most:
            raise KAdapterError(f"--train-templates must be between 1 and {most}, got {train_templates}")
        self.seed, self.sizes, self.statements, self.mentions = seed, dict(sizes), statements, mentions
        # the first k training templates of each relation: template variety is a knob of the instrument
        self.templates = OrderedDict((r, (s, o, t[:train_templates], h)) for r, (s, o, t, h) in RELATIONS.items())
        rng = random.Random(seed)
        counts = {"person": sizes["persons"], "city": sizes["cities"], "country": sizes["countries"],
                  "company": sizes["companies"], "university": sizes["universities"]}
        names = make_names(rng, sum(counts.values()), template_words())
        rng.shuffle(names)
        self.entities: "OrderedDict[str, dict]" = OrderedDict()
        self.by_type: Dict[str, List[str]] = {}
        start = 0
        for etype in TYPES:
            chosen = names[start : start + counts[etype]]
            start += counts[etype]
            self.by_type[etype] = chosen
            for name in chosen:
                self.entities[name] = {"type": etype, "partition": None}
        # subjects of some relation are partitioned: a third each, in a seeded order
        subject_types = sorted({s for s, _, _, _ in RELATIONS.values()}, key=TYPES.index)
        for etype in subject_types:
            order = list(self.by_type[etype])
            rng.shuffle(order)
            for i, name in enumerate(order):
                self.entities[name]["partition"] = PARTITIONS[i * len(PARTITIONS) // len(order)]
        self.facts: List[Tuple[str, str, str]] = []
        for relation, (stype, otype, _, _) in RELATIONS.items():
            if relation == "spouse":
                self.facts += self._spouses(rng)
                continue
            for subject in self.by_type[stype]:
                self.facts.append((subject, relation, rng.choice(self.by_type[otype])))
        self.shuffled_facts = self._shuffle_trained_objects(random.Random(seed + 1))

    def _spouses(self, rng) -> List[Tuple[str, str, str]]:
        """Couples within a partition (a fact and its converse stay in one partition); one person of an
        odd partition stays unmarried."""
        facts = []
        for partition in PARTITIONS:
            people = [p for p in self.by_type["person"] if self.entities[p]["partition"] == partition]
            rng.shuffle(people)
            for a, b in zip(people[0::2], people[1::2]):
                facts += [(a, "spouse", b), (b, "spouse", a)]
        facts.sort(key=lambda f: self.by_type["person"].index(f[0]))
        return facts

    def _shuffle_trained_objects(self, rng) -> List[Tuple[str, str, str]]:
        """The ``shuffled`` control: the trained partition's objects permuted across the facts of each
        relation (same sentences and object frequencies, no true fact beyond chance)."""
        out = list(self.facts)
        for relation in RELATIONS:
            idx = [i for i, (s, r, _) in enumerate(out) if r == relation and self.partition(s) == TRAINED_PARTITION]
            objects = [out[i][2] for i in idx]
            rng.shuffle(objects)
            for i, o in zip(idx, objects):
                out[i] = (out[i][0], relation, o)
        return out

    def partition(self, entity: str) -> str:
        return self.entities[entity]["partition"]

    def facts_of(self, partition: str) -> List[Tuple[str, str, str]]:
        return [f for f in self.facts if self.partition(f[0]) == partition]

    def majority(self) -> Dict[str, Dict[str, dict]]:
        """``{partition: {relation: {"object", "rate", "n"}}}``: the majority baseline of each relation."""
        out = {}
        for partition in PARTITIONS:
            out[partition] = {}
            for relation in RELATIONS:
                objects = Counter(o for s, r, o in self.facts_of(partition) if r == relation)
                n = sum(objects.values())
                if n:
                    obj, top = max(objects.items(), key=lambda kv: (kv[1], kv[0]))
                    out[partition][relation] = {"object": obj, "rate": top / n, "n": n}
        return out

    # ------------------------------------------------------------------------------------------
    # text

    def base_text(self) -> List[str]:
        """Each base-partition fact ``statements`` times, cycling through the training templates, and
        ``mentions`` neutral mentions of every entity; in a seeded order."""
        rng = random.Random(self.seed + 2)
        lines = []
        for subject, relation, obj in self.facts_of("base"):
            templates = self.templates[relation][2]
            start = rng.randrange(len(templates))
            for k in range(self.statements):
                lines.append(fill(templates[(start + k) % len(templates)], subject, obj))
        for name in self.entities:
            start = rng.randrange(len(MENTION_FRAMES))
            for k in range(self.mentions):
                lines.append(MENTION_FRAMES[(start + k) % len(MENTION_FRAMES)].replace("[E]", name))
        rng.shuffle(lines)
        return lines

    def downstream(self) -> Dict[str, List[dict]]:
        """TACRED records on neutral sentences: every fact of every partition as a positive pair (a couple
        once), and as many same-type unrelated pairs (``no_relation``); split by pair into train/valid/test
        within each partition and label, so no test pair is seen in training."""
        rng = random.Random(self.seed + 3)
        related = {(s, o) for s, _, o in self.facts}
        splits = {name: [] for name, _ in DOWNSTREAM_FRACTIONS}
        for partition in PARTITIONS:
            pairs = []
            for subject, relation, obj in self.facts_of(partition):
                if relation == "spouse" and obj < subject:
                    continue  # one direction per couple: its converse would be the same pair, seen in another split
                pairs.append((subject, obj, relation))
                otype = self.entities[obj]["type"]
                candidates = [e for e in self.by_type[otype] if e != subject and (subject, e) not in related]
                if candidates:
                    pairs.append((subject, rng.choice(candidates), "no_relation"))
            # each label split on its own, so that every relation of the partition reaches the training split
            for label in sorted({p[2] for p in pairs}):
                group = [p for p in pairs if p[2] == label]
                rng.shuffle(group)
                start = 0
                for k, (name, fraction) in enumerate(DOWNSTREAM_FRACTIONS):
                    end = len(group) if k == len(DOWNSTREAM_FRACTIONS) - 1 else start + max(int(round(fraction * len(group))), k == 0)
                    splits[name] += [(partition, *p) for p in group[start:end]]
                    start = end
        out = {}
        for name, chosen in splits.items():
            rng.shuffle(chosen)
            out[name] = [self._record(f"{name}-{i}", subject, obj, relation, partition, rng)
                         for i, (partition, subject, obj, relation) in enumerate(chosen)]
        return out

    def _record(self, rid, subject, obj, relation, partition, rng) -> dict:
        frame = rng.choice(PAIR_FRAMES).split()
        tokens, spans = [], {}
        for word in frame:
            if word in ("[S]", "[O]"):
                spans[word] = (len(tokens), len(tokens))  # one-word names: inclusive spans
                tokens.append(subject if word == "[S]" else obj)
            else:
                tokens.append(word)
        return {
            "id": rid, "token": tokens, "relation": relation, "partition": partition,
            "subj_start": spans["[S]"][0], "subj_end": spans["[S]"][1],
            "obj_start": spans["[O]"][0], "obj_end": spans["[O]"][1],
            "subj_type": self.entities[subject]["type"].upper(), "obj_type": self.entities[obj]["type"].upper(),
        }

    def description(self) -> dict:
        return {
            "seed": self.seed,
            "sizes": self.sizes,
            "statements": self.statements,
            "train_templates_per_relation": len(next(iter(self.templates.values()))[2]),
            "mentions": self.mentions,
            "partitions": list(PARTITIONS),
            "trained_partition": TRAINED_PARTITION,
            "relations": {r: {"subject": s, "object": o, "train_templates": t, "probe_templates": h}
                          for r, (s, o, t, h) in self.templates.items()},
            "entities": self.entities,
            "facts": {p: len(self.facts_of(p)) for p in PARTITIONS},
            "majority": self.majority(),
            "base_settings": dict(BASE_SETTINGS, note="what --build-base passes to kadapter-build-base (vocab_size: "
                                                      "where the single-piece search starts)"),
        }


def single_piece_vocab_size(lines: Sequence[str], names: Sequence[str], start: int, seed: int, valid_fraction: float,
                            step: int = 250, limit: int = 8000) -> Tuple[int, List[str]]:
    """The smallest sentencepiece vocabulary size (``start``, ``start + step``, ...) at which every name
    is one whole-word piece (``▁Name``) of the vocabulary ``kadapter-build-base`` trains on ``lines``:
    the same train/valid split and trainer, so the base built with that size holds the same pieces.
    Returns ``(size, names still split at the limit)``."""
    import tempfile

    import sentencepiece as spm

    from kadapter_fairseq.tools.build_base import split_lines
    from kadapter_fairseq.tools.tiny_base import train_sentencepiece

    train, _ = split_lines(list(lines), valid_fraction, seed)
    seen = {w for line in train for w in line.split()}
    absent = [n for n in names if n not in seen]
    if absent:  # only in the held-out lines: no vocabulary size can make these pieces
        return start, absent
    size, split = start, list(names)
    with tempfile.TemporaryDirectory() as tmp:
        while size <= limit:
            prefix = os.path.join(tmp, "sp")
            train_sentencepiece(train, prefix, size)
            proc = spm.SentencePieceProcessor(model_file=prefix + ".model")
            split = [n for n in names if proc.encode(n, out_type=str) != ["\u2581" + n]]
            if not split:
                return size, []
            size += step
    return size - step, split


def fill(template: str, subject: str, obj: str) -> str:
    return template.replace("[X]", subject).replace("[Y]", obj)


# ---------------------------------------------------------------------------------------------
# writing


def write_world(world: World, out: str) -> dict:
    from kadapter_fairseq.atomic import write_json

    os.makedirs(out, exist_ok=True)
    for name, facts in (("triples.tsv", world.facts), ("triples_shuffled.tsv", world.shuffled_facts)):
        write_lines(os.path.join(out, name), (f"{s}\t{r}\t{o}\t{world.partition(s)}" for s, r, o in facts))
    write_lines(os.path.join(out, "relations.jsonl"),
                (json.dumps({"relation": r, "template": t, "label": r.replace("_", " ")})
                 for r, (_, _, train, _) in world.templates.items() for t in train))
    write_lines(os.path.join(out, "probe_templates.jsonl"),
                (json.dumps({"relation": r, "template": t, "label": r.replace("_", " ")})
                 for r, (_, _, _, heldout) in RELATIONS.items() for t in heldout))
    text = world.base_text()
    write_lines(os.path.join(out, "base_text.txt"), text)
    down = os.path.join(out, "downstream")
    os.makedirs(down, exist_ok=True)
    splits = world.downstream()
    for split, records in splits.items():
        write_json(os.path.join(down, f"{split}.json"), records)
    for partition in PARTITIONS:
        write_json(os.path.join(down, f"test_{partition}.json"), [r for r in splits["test"] if r["partition"] == partition])
    info = world.description()
    info["base_text_lines"] = len(text)
    info["downstream"] = {s: dict(Counter(r["relation"] for r in recs)) for s, recs in splits.items()}
    write_json(os.path.join(out, "world.json"), info)
    return info


def build_world_base(world: World, out: str, updates: int, threads: int) -> str:
    """``OUT/base``: ``kadapter-build-base`` on the world's text with ``BASE_SETTINGS``, the vocabulary
    sized so that every entity name is one piece (``single_piece_vocab_size``); reused when unchanged."""
    from kadapter_fairseq.tools import build_base

    text = os.path.join(out, "base_text.txt")
    with open(text, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    settings = dict(BASE_SETTINGS, updates=updates, warmup=max(1, updates // 10))
    # 0.1, not kadapter-build-base's 0.05: fairseq-train batches the valid split in multiples of 8 blocks and
    # stops on an empty valid iterator, which a small world's 5% can be; the vocabulary check replicates the split
    valid_fraction = 0.1
    vocab, split = single_piece_vocab_size(lines, list(world.entities), settings["vocab_size"], settings["seed"], valid_fraction)
    if split:
        raise KAdapterError(f"no vocabulary up to {vocab} pieces holds every name as one piece (e.g. {split[:3]}): "
                            "state the facts more often (--statements, --mentions)")
    settings["vocab_size"] = vocab
    base = os.path.join(out, "base")
    argv = ["--text", text, "--out", base, "--valid-fraction", str(valid_fraction)]
    for key, value in settings.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    print("[world] kadapter-build-base " + " ".join(argv), flush=True)
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)  # fairseq-train runs in a child process, which reads this
    try:
        build_base.build(build_base.build_parser().parse_args(argv))
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = before
    return base


def write_knowledge(out: str, base_dir: str):
    """``data_prep.kg`` on the world's triples (the user's path), and on the shuffled control's."""
    from . import kg

    common = ["--relations", os.path.join(out, "relations.jsonl"), "--probe-templates", os.path.join(out, "probe_templates.jsonl"),
              "--train-partitions", TRAINED_PARTITION, "--roberta-dir", base_dir]
    print(f"[world] python -m data_prep.kg --triples {out}/triples.tsv " + " ".join(common) + f" --out {out}/knowledge", flush=True)
    info = kg.convert(kg.build_parser().parse_args(["--triples", os.path.join(out, "triples.tsv"), *common,
                                                    "--out", os.path.join(out, "knowledge")]))
    skipped = info["outputs"]["probe"]["counts"]["skipped"]
    if skipped:
        raise KAdapterError(f"{sum(skipped.values())} probe facts were skipped ({skipped}): the base {base_dir} does not "
                            "hold every object as one whole-word token; build it with --build-base")
    kg.convert(kg.build_parser().parse_args(["--triples", os.path.join(out, "triples_shuffled.tsv"), *common,
                                             "--outputs", "relation,mlm", "--out", os.path.join(out, "knowledge_shuffled")]))


# ---------------------------------------------------------------------------------------------
# the command


def build_parser():
    p = argparse.ArgumentParser(prog="python -m data_prep.world", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, required=True, help="seed of everything the world draws")
    p.add_argument("--out", required=True, help="output directory")
    g = p.add_argument_group("the world's size")
    for key, value in DEFAULT_SIZES.items():
        g.add_argument(f"--{key}", type=int, default=value, help=f"default {value}")
    g.add_argument("--statements", type=int, default=DEFAULT_STATEMENTS,
                   help=f"times each base-partition fact is stated in the base text (default {DEFAULT_STATEMENTS})")
    g.add_argument("--train-templates", type=int, default=DEFAULT_TRAIN_TEMPLATES,
                   help=f"training templates per relation, the first of each list (default {DEFAULT_TRAIN_TEMPLATES})")
    g.add_argument("--mentions", type=int, default=DEFAULT_MENTIONS,
                   help=f"neutral mentions of every entity in the base text (default {DEFAULT_MENTIONS})")
    g = p.add_argument_group("base and knowledge data")
    base = g.add_mutually_exclusive_group()
    base.add_argument("--build-base", action="store_true",
                      help="build the world's base into OUT/base (kadapter-build-base, BASE_SETTINGS; reused when unchanged)")
    base.add_argument("--roberta-dir", help="an existing base built on OUT/base_text.txt, to write the knowledge data for")
    g.add_argument("--base-updates", type=int, default=BASE_SETTINGS["updates"], help="--build-base: masked-LM updates")
    g.add_argument("--base-threads", type=int, default=2, help="--build-base: torch threads of the base's training")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    sizes = {key: getattr(args, key) for key in DEFAULT_SIZES}
    world = World(args.seed, sizes, args.statements, args.mentions, args.train_templates)
    info = write_world(world, args.out)
    print(f"world {args.seed}: {len(world.entities)} entities, facts per partition {info['facts']}; "
          f"{info['base_text_lines']} lines of base text -> {args.out}")
    base_dir = args.roberta_dir
    if args.build_base:
        base_dir = build_world_base(world, args.out, args.base_updates, args.base_threads)
    if base_dir:
        write_knowledge(args.out, base_dir)
    else:
        print("next: a base on the world's text, then its knowledge data:\n"
              f"  python -m data_prep.world --seed {args.seed} --out {args.out} --build-base")
    return 0


if __name__ == "__main__":
    run_main(main)
