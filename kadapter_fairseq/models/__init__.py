from . import roberta_kadapter  # noqa: F401
