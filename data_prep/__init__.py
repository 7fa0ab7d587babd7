"""Converters from public corpora to the binarized layout the kadapter_fairseq tasks read.

Each converter is a command: ``python -m data_prep.<name> --help``. Shared helpers live in
``data_prep.common`` (progress bar, skip counting, JSON reading with line numbers, seeded split,
tokenizer options); knowledge pre-training shares ``relations`` and ``dependency``.
"""
