"""LAMA-UHN (Poerner et al. 2019): drop the facts a model can guess from the entity's name.

Both filters as LAMA's ``scripts/create_lama_uhn.py`` defines them, applied in its order
(string match first, then person name) to the facts as read, before any other rule:

* string match: the object label, lower-cased, is a substring of the subject label, lower-cased;
* person name: for relations about people, each whitespace-separated part of the subject
  label is asked ``[X] is a common name in the following [Y] : [MASK] .`` (``[Y]`` = city,
  country or language); the fact goes when the object is among the top 3 answers for any part.
  LAMA used bert-base-cased as that judge; here it is the probed base itself (no adapters) or
  another base (``--uhn-model``), ranking its whole-word vocabulary.
"""
from collections import Counter
from typing import Callable, Dict, List, Sequence, Tuple

NAME_TEMPLATE = "[X] is a common name in the following [Y] : [MASK] ."
# relation -> the noun of the name query; Google-RE relations by file name and by LAMA's ``pred``
PERSON_RELATIONS = {
    "P19": "city",
    "P20": "city",
    "P27": "country",
    "P1412": "language",
    "P103": "language",
    "place_of_birth": "city",
    "place_of_death": "city",
    "/people/person/place_of_birth": "city",
    "/people/deceased_person/place_of_death": "city",
}
NAME_TOP_K = 3


def string_match(sub_label: str, obj_label: str, lowercase: bool = True) -> bool:
    if lowercase:
        sub_label, obj_label = sub_label.lower(), obj_label.lower()
    return obj_label in sub_label


def name_queries(relation: str, sub_label: str) -> List[str]:
    noun = PERSON_RELATIONS.get(relation)
    if noun is None:
        return []
    template = NAME_TEMPLATE.replace("[Y]", noun)
    return [template.replace("[X]", part) for part in sub_label.split()]


def apply_uhn(facts: Sequence, top_words: Callable[[List[str]], Dict[str, List[str]]]) -> Tuple[list, Dict[str, Counter]]:
    """The facts LAMA-UHN keeps, and per relation how many each filter removed.

    ``top_words(texts)`` answers each name query with the judge model's top-3 words."""
    removed: Dict[str, Counter] = {}
    after_string = []
    for fact in facts:
        if string_match(fact.sub_label, fact.obj_label):
            removed.setdefault(fact.relation, Counter())["string_match"] += 1
        else:
            after_string.append(fact)
    texts = [q for fact in after_string for q in name_queries(fact.relation, fact.sub_label)]
    answers = top_words(texts) if texts else {}
    kept = []
    for fact in after_string:
        if any(fact.obj_label in answers[q][:NAME_TOP_K] for q in name_queries(fact.relation, fact.sub_label)):
            removed.setdefault(fact.relation, Counter())["person_name"] += 1
        else:
            kept.append(fact)
    return kept, removed
