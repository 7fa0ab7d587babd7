"""Every repository path that docs, code comments and configs cite exists, every ``§`` they cite into
docs/reference/ is a section there, and nothing points outside the repository.

What counts as a citation (the regexes below): a token starting with one of the repository's top-level
folders (``docs/...``, ``configs/...``, ``kadapter_fairseq/...``, ``data_prep/...``, ``examples/...``,
``tests/...``, ``tools/...``) or, for ``.py`` files, with a package folder (``tools/train.py``,
``modules/heads.py``: resolved inside ``kadapter_fairseq/``); a dotted module name (``kadapter_fairseq.tools.bench``,
``data_prep.trex``); a relative markdown link and its ``#anchor``; ``<file>.md §N`` for the reference docs.
``<placeholder>``, ``*`` and ``{a,b}`` in a path must match at least one file. A token preceded by another
path character (``K-Adapter/examples/...``, ``fairseq/tasks/...``) names someone else's repository and is
not checked.
"""
import glob
import itertools
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "kadapter_fairseq"

SCANNED = (
    ["README.md"]
    + glob.glob("docs/**/*.md", root_dir=REPO, recursive=True)
    + glob.glob("configs/**/*.yaml", root_dir=REPO, recursive=True)
    + glob.glob(f"{PACKAGE}/**/*.py", root_dir=REPO, recursive=True)
    + glob.glob("data_prep/*.py", root_dir=REPO)
    + [p for ext in ("py", "yaml", "sh", "md") for p in glob.glob(f"examples/**/*.{ext}", root_dir=REPO, recursive=True)]
)
SCANNED = sorted(set(SCANNED))

# paths under the repository's own folders that name what a run writes, not what the repository holds
GENERATED = ()
# words that look like such a path and are not one
NOT_PATHS = ("examples/s",)  # a unit: examples per second

TOP = r"(?:docs|configs|kadapter_fairseq|data_prep|examples|tests|tools)/"
IN_PACKAGE = r"(?:tools|models|modules|tasks|criterions|scoring|probe|convert|experiment|data)/[\w./<>*{}-]*\.py"
_PATH = re.compile(rf"(?<![\w./{{}}<>-])((?:{TOP})[\w./<>*{{}},-]*|{IN_PACKAGE})")
_MODULE = re.compile(r"(?<![\w./-])((?:kadapter_fairseq|data_prep)(?:\.\w+)+)")
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
_SECTION_REF = re.compile(
    r"(?:docs/reference/)?(kadapter|fairseq)\.md\)?\s*§(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?"
)
_HEADING = re.compile(r"^#+\s+(.*?)\s*$", re.M)


def read(rel):
    with open(os.path.join(REPO, rel), encoding="utf-8") as f:
        return f.read()


def line_of(text, pos):
    return text.count("\n", 0, pos) + 1


def clean_token(token):
    """Cut a matched token at the first character that cannot belong to the path."""
    depth, out = 0, []
    for ch in token:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                break
        elif ch == "," and depth == 0:
            break
        out.append(ch)
    token = "".join(out)
    while token and token[-1] in ".,-":
        token = token[:-1]
    return token


def expand(pattern):
    """``{a,b}`` alternatives (one alternative: a placeholder such as ``{name}``) and ``<placeholder>``."""
    pattern = re.sub(r"<[^<>/]*>", "*", pattern)
    parts = re.split(r"(\{[^{}]*\})", pattern)
    choices = []
    for part in parts:
        if part.startswith("{") and part.endswith("}"):
            alts = part[1:-1].split(",")
            choices.append(alts if len(alts) > 1 else ["*"])
        else:
            choices.append([part])
    return ["".join(c) for c in itertools.product(*choices)]


def exists(rel_pattern, base=REPO):
    attribute = re.fullmatch(r"(.+/\w+)\.(?!(?:py|md|yaml|sh|json|txt)$)[A-Za-z_]\w*", rel_pattern)  # tools/tiny_base.make_tiny_base
    if attribute and os.path.isfile(os.path.join(base, attribute.group(1) + ".py")):
        return True
    for pattern in expand(rel_pattern.rstrip("/")):
        if any(ch in pattern for ch in "*?["):
            if not glob.glob(pattern, root_dir=base):
                return False
        elif not os.path.exists(os.path.join(base, pattern)):
            return False
    return True


def module_exists(dotted):
    """The longest prefix that is a module or package must be more than the top package itself."""
    parts = dotted.split(".")
    while parts and parts[-1].startswith("__"):  # kadapter_fairseq.__path__, .__file__
        parts.pop()
    if len(parts) == 1:
        return True
    for n in range(len(parts), 1, -1):
        path = os.path.join(REPO, *parts[:n])
        if os.path.isfile(path + ".py") or os.path.isfile(os.path.join(path, "__init__.py")):
            return True
    return False


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(rel):
    return {slug(h) for h in _HEADING.findall(strip_code(read(rel)))}


def sections(rel):
    return set(re.findall(r"^#+\s+§(\d+(?:\.\d+)?)\b", read(rel), re.M))


def strip_code(text):
    """Markdown without fenced code blocks (a ``#`` there is a comment, not a heading)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def citations(rel):
    text = read(rel)
    for m in _PATH.finditer(text):
        yield line_of(text, m.start()), clean_token(m.group(1))


def test_there_is_something_to_check():
    assert "README.md" in SCANNED and "docs/reference/kadapter.md" in SCANNED
    assert len(SCANNED) > 100


def test_every_cited_repository_path_exists():
    missing = []
    for rel in SCANNED:
        for line, token in citations(rel):
            if token in NOT_PATHS or any(token.startswith(g) for g in GENERATED):
                continue
            # tools/... is the top-level folder or the package's; modules/heads.py is the package's
            bases = [REPO, os.path.join(REPO, PACKAGE)] if token.startswith("tools/") else \
                [REPO] if re.match(TOP, token) else [os.path.join(REPO, PACKAGE)]
            if not any(exists(token, base) for base in bases):
                missing.append(f"{rel}:{line}: {token}")
    assert not missing, "cited paths that do not exist:\n" + "\n".join(missing)


def test_every_cited_module_exists():
    missing = []
    for rel in SCANNED:
        text = read(rel)
        for m in _MODULE.finditer(text):
            if not module_exists(m.group(1)):
                missing.append(f"{rel}:{line_of(text, m.start())}: {m.group(1)}")
    assert not missing, "cited modules that do not exist:\n" + "\n".join(missing)


def test_markdown_links_and_anchors_resolve():
    broken = []
    for rel in (p for p in SCANNED if p.endswith(".md")):
        text = strip_code(read(rel))
        for m in _LINK.finditer(text):
            target = m.group(1)
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(rel), path)) if path else rel
            where = f"{rel}:{line_of(text, m.start())}: {target}"
            if dest.startswith(".."):
                broken.append(where + " (outside the repository)")
            elif not os.path.exists(os.path.join(REPO, dest)):
                broken.append(where)
            elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                broken.append(where + f" (no heading with anchor #{anchor} in {dest})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_section_citations_name_existing_sections():
    known = {name: sections(f"docs/reference/{name}.md") for name in ("kadapter", "fairseq")}
    # the numbering follows the method's original description: these must all be there
    assert {"1", "1.1", "1.2", "1.3", "1.4", "2", "2.1", "2.2", "3", "3.1", "3.2", "3.3", "4", "5"} <= known["kadapter"]
    bad = []
    for rel in SCANNED:
        text = read(rel)
        refs = [(m.start(), m.group(1), [m.group(2), m.group(3)]) for m in _SECTION_REF.finditer(text)]
        name = os.path.splitext(os.path.basename(rel))[0]
        if rel.startswith("docs/reference/") and name in known:
            # a bare § inside a reference doc means its own sections, unless it is the paper's
            for m in re.finditer(r"(?<![\w.)])\s§(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?", text):
                before = text[max(0, m.start() - 12):m.start()]
                if not re.search(r"paper\W*$|\.md\)?$", before):
                    refs.append((m.start(), name, [m.group(1), m.group(2)]))
        for pos, doc, numbers in refs:
            for number in filter(None, numbers):
                if number not in known[doc]:
                    bad.append(f"{rel}:{line_of(text, pos)}: {doc}.md §{number}")
    assert not bad, "citations of sections that do not exist:\n" + "\n".join(bad)


OUTSIDE_SCANNED = sorted(
    set(SCANNED)
    | {p for ext in ("txt", "json", "cfg", "ini", "toml") for p in glob.glob(f"**/*.{ext}", root_dir=REPO, recursive=True)
       if p.split("/")[0] in ("docs", "configs", PACKAGE, "data_prep", "examples")}
    | {p for p in ("Makefile", "setup.py", "requirements.txt", "pytest.ini") if os.path.exists(os.path.join(REPO, p))}
)


def provenance(rel):
    """Files that record where shipped data came from may name the folder it was made from."""
    return rel.startswith("examples/data/") and os.path.basename(rel) in ("SOURCE.txt", "prep.json")


def test_nothing_points_outside_the_repository():
    found = []
    for rel in OUTSIDE_SCANNED:
        if provenance(rel):
            continue
        text = read(rel)
        for m in re.finditer(r"\.\./shared|\bkadapter-spec\b|fairseq-notes\.md|design-notes\.md", text):
            found.append(f"{rel}:{line_of(text, m.start())}: {m.group(0)}")
    assert not found, (
        "pointers outside the repository (name data by its public source or examples/data/, "
        "cite docs/reference/):\n" + "\n".join(found)
    )


def test_no_citations_of_the_old_spec():
    found = []
    for rel in OUTSIDE_SCANNED:
        text = read(rel)
        for m in re.finditer(r"\bspec\s*(?:§|\d+\.\d)|\bthe spec\b", text, re.I):
            found.append(f"{rel}:{line_of(text, m.start())}: {m.group(0)!r}")
    assert not found, "cite docs/reference/kadapter.md §N instead:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "token, ok",
    [
        ("docs/reference/kadapter.md", True),
        ("configs/paper_table{2,3,4}.yaml", False),
        ("configs/experiments/paper_table{2,3,4}.yaml", True),
        ("data_prep/<format>.py", True),
        ("configs/cpu/<task>.yaml", True),
        ("docs/no_such_file.md", False),
        ("kadapter_fairseq/tools/tiny_base.make_tiny_base", True),
        ("kadapter_fairseq/tools/tiny_base.md", False),
    ],
)
def test_the_checker_itself(token, ok):
    assert exists(token) is ok
    assert clean_token("docs/demo.md,") == "docs/demo.md"
    assert clean_token("docs/demo.md.") == "docs/demo.md"
    assert clean_token("configs/{a,b}.yaml, and") == "configs/{a,b}.yaml"
    assert slug("§5 Frozen parameters and the optimizer") == "5-frozen-parameters-and-the-optimizer"
    assert slug("## The model: `roberta_kadapter`".lstrip("# ")) == "the-model-roberta_kadapter"


def test_the_patterns_find_what_they_should():
    text = ("see docs/reference/kadapter.md §1.1-1.2 and [ref](reference/fairseq.md) §4; "
            "`K-Adapter/examples/utils_glue.py`, `tools/train.py`, configs/cpu/<task>.yaml.")
    assert [(m.group(1), m.group(2), m.group(3)) for m in _SECTION_REF.finditer(text)] == [
        ("kadapter", "1.1", "1.2"), ("fairseq", "4", None)]
    assert [clean_token(m.group(1)) for m in _PATH.finditer(text)] == [
        "docs/reference/kadapter.md", "tools/train.py", "configs/cpu/<task>.yaml"]
    assert module_exists("kadapter_fairseq.tools.bench") and module_exists("data_prep.trex.main")
    assert not module_exists("kadapter_fairseq.distributed_bench")
