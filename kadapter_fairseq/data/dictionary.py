"""The RoBERTa dictionary: ``dict.txt`` plus ``<mask>``, as every RoBERTa task builds it
(the released models' embedding tables have that row)."""
import os

from fairseq.data import Dictionary

from ..errors import ConfigError


def load_roberta_dictionary(path: str, hint: str = "") -> Dictionary:
    if not os.path.isfile(path):
        raise ConfigError(f"dictionary not found: {path}" + (f" ({hint})" if hint else ""))
    dictionary = Dictionary.load(path)
    dictionary.add_symbol("<mask>")
    return dictionary
