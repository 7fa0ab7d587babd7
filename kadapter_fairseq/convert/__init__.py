"""Bring your own weights: converters into this toolkit's formats (``kadapter-convert``).

* ``hf_roberta``: a Hugging Face RoBERTa directory -> a fairseq RoBERTa directory.
* ``released_adapter``: a knowledge adapter from the authors' release -> an adapter checkpoint.
* ``fairseq_roberta``: checks (and re-packs) fairseq's own ``roberta.base``/``roberta.large`` directories.
"""
