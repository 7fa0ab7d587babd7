"""Chance levels of relation-classification scores, computed from the gold file alone.

TACRED's micro-F1 leaves ``no_relation`` out, so the majority answer (``no_relation`` for every
example) scores 0 whatever the data: it is no chance level to read a score against. What a
model can reach without knowing anything about the pair is set by the entity types: the *type
baseline* answers, for every example, the relation most frequent among the gold file's examples
of its (subject type, object type), ``no_relation`` where a type pair has no other; its micro-F1
is counted as the scorer counts (``scoring.classification.relation_counts``). Where each type
pair allows one relation and half the pairs of each type are unrelated (the ground-truth world's
neutral-sentence task), it answers the relation for every pair: precision 1/2, recall 1,
micro-F1 2/3. It reads the test file's own label counts per type pair, so it is the best such
rule for that file, a ceiling for models that know only the types.
"""
from collections import Counter
from typing import Dict, Optional

from ..data.json_records import iter_json_records
from ..errors import DataError
from ..scoring.classification import NO_RELATION, relation_counts


def type_baseline(path: str, negative: str = NO_RELATION) -> Optional[float]:
    """Micro-F1 of the type baseline on the TACRED-JSON gold file ``path`` (None when its records carry no
    ``subj_type``/``obj_type``)."""
    records = []
    for index, line, rec in iter_json_records(path):
        if not isinstance(rec, dict) or not isinstance(rec.get("relation"), str):
            raise DataError(path, line, f"record {index}: expected a TACRED record with a 'relation'")
        types = (rec.get("subj_type"), rec.get("obj_type"))
        if not all(isinstance(t, str) for t in types):
            return None
        records.append((types, rec["relation"]))
    by_types: Dict[tuple, Counter] = {}
    for types, relation in records:
        by_types.setdefault(types, Counter())[relation] += 1
    # ties broken by name, so the number does not depend on the file's order
    guess = {types: min((r for r in c if r != negative), key=lambda r: (-c[r], r), default=negative)
             for types, c in by_types.items()}
    counts = relation_counts(((relation, guess[types]) for types, relation in records), negative)
    denom = 2 * counts["tp"] + counts["fp"] + counts["fn"]
    return 2 * counts["tp"] / denom if denom else 1.0
