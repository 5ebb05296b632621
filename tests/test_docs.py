"""The documentation cannot drift from the code.

* Every fenced block opened with ```console in README.md and docs/**/*.md is runnable: each of its
  lines starting with ``$ `` must be a ``$ ptmzoo ...`` command; the commands of a page run in order
  (in one process per page) in an empty directory holding the tiny example files of
  ``docs/index.md`` ("The example files"), and each must exit with 0. A ```yaml block whose first
  line is ``# file: NAME`` is written to NAME there first.
* A fast test parses every such command with the CLI's parser (a wrong flag fails at once).
* ``mkdocs build --strict`` builds the site without a warning; every link of README.md into docs/
  resolves; docs/layout.md names every module of src/ptmzoo/.
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def _blocks(path: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(path.read_text(encoding="utf-8"))]


def commands(path: Path) -> list[list[str]]:
    """The argv (after ``ptmzoo``) of every ``$ ptmzoo`` line of the page's console blocks, in order;
    a line ending in a backslash continues on the next one."""
    found = []
    for lang, body in _blocks(path):
        if lang != "console":
            continue
        lines = body.replace("\\\n", " ").splitlines()
        for line in lines:
            if not line.startswith("$ "):
                continue  # the command's output, shown
            assert line.startswith("$ ptmzoo "), f"{path.name}: a console block runs only ptmzoo commands: {line}"
            found.append(shlex.split(line[len("$ ptmzoo "):]))
    return found


def recipe_files(path: Path) -> dict[str, str]:
    files = {}
    for lang, body in _blocks(path):
        first, _, _ = body.partition("\n")
        if lang in ("yaml", "yml") and first.startswith("# file: "):
            files[first[len("# file: "):].strip()] = body
    return files


RUNNABLE = [p for p in PAGES if commands(p)]


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def write_example_files(directory: Path) -> None:
    """The tiny files the runnable blocks read (described in docs/index.md, "The example files")."""
    rng = random.Random(0)
    things = ["the film", "the book", "this phone", "the hotel", "our dinner", "the song", "that game", "the room"]
    good = ["good", "great", "lovely", "fine", "excellent"]
    bad = ["bad", "awful", "poor", "boring", "terrible"]
    verbs = ["was", "seemed", "felt", "looked"]

    def sentence(words):
        return f"{rng.choice(things)} {rng.choice(verbs)} {rng.choice(words)} ."

    with open(directory / "corpus.txt", "w", encoding="utf-8") as fh:
        fh.writelines(" ".join(sentence(good + bad) for _ in range(rng.randint(2, 5))) + "\n" for _ in range(300))
    for name, rows in (("train.tsv", 64), ("dev.tsv", 24), ("test.tsv", 24)):
        with open(directory / name, "w", encoding="utf-8") as fh:
            fh.write("text\tlabel\n")
            fh.writelines(f"{sentence(good if i % 2 else bad)}\t{i % 2}\n" for i in range(rows))
    with open(directory / "triples.tsv", "w", encoding="utf-8") as fh:
        people = [f"person{i}" for i in range(20)]
        places = [f"city{i}" for i in range(10)]
        for i, person in enumerate(people):
            fh.write(f"{person}\tlives_in\t{places[i % 10]}\n")
            fh.write(f"{person}\tknows\t{people[(i + 1) % 20]}\n")
    with open(directory / "similarity.tsv", "w", encoding="utf-8") as fh:
        fh.writelines(f"{a}\t{b}\t{score}\n" for a, b, score in (("good", "great", 9.0), ("good", "bad", 2.0), ("film", "book", 6.5),
                            ("awful", "terrible", 9.1), ("song", "room", 1.5), ("fine", "lovely", 7.0)))


# The commands of one page, run in one process (torch is imported once per page, not per command).
RUNNER = """
import json, sys, traceback
from ptmzoo.cli import main
for argv in json.loads(sys.argv[1]):
    print("$ ptmzoo " + " ".join(argv), flush=True)
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code or 0
    if code != 0:
        print(f"FAILED with exit code {code}: ptmzoo {' '.join(argv)}", flush=True)
        sys.exit(1)
"""


def test_every_console_line_is_a_ptmzoo_command_the_parser_takes():
    from ptmzoo.cli import _verb_named, build_parser

    assert len(RUNNABLE) >= 12, [_id(p) for p in RUNNABLE]
    for path in RUNNABLE:
        for argv in commands(path):
            parser = build_parser(only=_verb_named(argv))
            try:
                args = parser.parse_args(argv)
            except SystemExit as exc:
                pytest.fail(f"{_id(path)}: `ptmzoo {' '.join(argv)}` does not parse (exit {exc.code})")
            assert args.verb, argv


def test_every_verb_page_has_a_runnable_block():
    for name in ("tokenizer", "prepare", "pretrain", "finetune", "evaluate", "generate", "convert", "transfer",
                 "compress", "vectors"):
        assert DOCS / f"{name}.md" in RUNNABLE, name
    assert ROOT / "README.md" in RUNNABLE


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=_id)
def test_runnable_blocks_run(page, tmp_path):
    write_example_files(tmp_path)
    for name, text in recipe_files(page).items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PTMZOO_LOAD_WARNING": "0",
           "PTMZOO_CPU_BF16": "0"}
    result = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(commands(page))], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600, env=env, check=False)
    assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-4000:])


def test_readme_links_into_docs_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(((?:docs/)[^)#\s]*)(?:#[^)]*)?\)", text)
    assert len(links) >= 10, links
    for link in links:
        assert (ROOT / link).is_file(), f"README.md links to {link}, which does not exist"


def test_layout_names_every_module():
    """docs/layout.md lists every module of src/ptmzoo/ under its folder (a new module needs a line)."""
    text = (DOCS / "layout.md").read_text(encoding="utf-8")
    tree = next(body for lang, body in _blocks(DOCS / "layout.md") if body.startswith("src/ptmzoo/"))
    sections: dict[str, str] = {}
    current: str | None = ""
    for line in tree.splitlines()[1:]:
        if re.match(r"^\S", line):  # tests/, bench/, docs/: past the package
            current = None
        elif match := re.match(r"^  (\S+)", line):  # an entry; deeper indentation continues one
            current = match.group(1) if match.group(1).endswith("/") else ""
        if current is not None:
            sections[current] = sections.get(current, "") + line + "\n"
    package = ROOT / "src" / "ptmzoo"
    missing = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if rel.name in ("__init__.py", "__main__.py", "_version.py") or "__pycache__" in rel.parts:
            continue
        folder = "" if len(rel.parts) == 1 else rel.parts[0] + "/"
        if folder == "interop/":
            folder = "interop/hf/" if (len(rel.parts) > 2 and rel.parts[1] == "hf") else folder
        if not re.search(rf"\b{re.escape(rel.stem)}(\.py)?\b", sections.get(folder, "")):
            missing.append(str(rel))
    assert not missing, f"docs/layout.md does not name: {missing}"
    assert "src/ptmzoo/" in text


def test_mkdocs_builds_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    for page in ("", "pretrain", "families/bert", "layout"):
        assert (tmp_path / "site" / page / "index.html").is_file(), page
