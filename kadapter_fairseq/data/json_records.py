"""JSON input read record by record, each with the line it starts on.

Every reader of user-supplied JSON (data_prep converters, gold and prediction
files of the scorers) goes through here, so a bad record is always a
``DataError`` naming file and line, in the same words, even inside a one-line
JSON array. Nothing here imports fairseq or torch.
"""
import json
from typing import Iterable, Iterator, Tuple

from ..errors import DataError


def bad_json(path, line, error: json.JSONDecodeError, what: str = "the line") -> DataError:
    return DataError(path, line, f"malformed JSON: {what} is not valid JSON ({error.msg}, column {error.colno})")


def iter_json_lines(path, lines: Iterable[str]) -> Iterator[Tuple[int, object]]:
    """``(line, value)`` per non-blank line of ``lines`` (an open file of ``path``)."""
    for n, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            yield n, json.loads(text)
        except json.JSONDecodeError as e:
            raise bad_json(path, n, e) from None


def iter_json_objects(path, lines: Iterable[str]) -> Iterator[Tuple[int, dict]]:
    """As ``iter_json_lines``, for files whose every line must be a JSON object."""
    for n, value in iter_json_lines(path, lines):
        if not isinstance(value, dict):
            raise DataError(path, n, "expected a JSON object per line")
        yield n, value


def iter_json_records(path) -> Iterator[Tuple[int, int, object]]:
    """Yield ``(index, line, record)`` from a JSON array file or a JSON-lines file.

    ``line`` is where the record starts, so a complaint about record 1234 of a
    one-line JSON array still says which record (callers add ``record N``).
    JSON lines are streamed; an array is read whole, as ``json`` needs it.
    """
    try:
        f = open(path, encoding="utf-8-sig")
    except OSError as e:
        raise DataError(path, None, f"cannot read: {e.strerror}") from None
    with f:
        head, first = "", ""
        while not first:
            chunk = f.read(4096)
            if not chunk:
                break
            head += chunk
            first = chunk.lstrip()[:1]
        if first == "[":
            text = head + f.read()
        else:
            f.seek(0)
            for index, (line, record) in enumerate(iter_json_lines(path, f)):
                yield index, line, record
            return
    yield from _iter_array(path, text, text.index("[") + 1)


def _iter_array(path, text, pos):
    decoder = json.JSONDecoder()
    line, counted_to, index = 1, 0, 0

    def skip_ws(p):
        while p < len(text) and text[p] in " \t\r\n":
            p += 1
        return p

    pos = skip_ws(pos)
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        if pos >= len(text):
            raise DataError(path, line, "malformed JSON: the array is not closed with ']' (file truncated?)")
        line += text.count("\n", counted_to, pos)
        counted_to = pos
        try:
            record, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise bad_json(path, e.lineno, e, f"record {index}") from None
        yield index, line, record
        index += 1
        pos = skip_ws(pos)
        if pos < len(text) and text[pos] == ",":
            pos = skip_ws(pos + 1)
        elif pos < len(text) and text[pos] == "]":
            return
        else:
            line += text.count("\n", counted_to, pos)
            found = repr(text[pos]) if pos < len(text) else "the end of the file"
            raise DataError(path, line, f"malformed JSON: after record {index - 1}, expected ',' or ']' but found {found}")
