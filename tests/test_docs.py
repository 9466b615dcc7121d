"""The README is a front page and docs/ holds the rest: links resolve, the README stays short, every `zoo`
command shown in a bash block parses with the real CLI parser, and the cheap self-contained Python blocks run.

docs/writing-a-plugin.md is executed end to end by tests/test_tutorial.py.
"""
import argparse
import contextlib
import io
import re
import shlex

import pytest

from conftest import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)\s]*)?\)")
README_LIMIT = 12_000
SHELL_OPERATORS = {">", ">>", "2>", "|", "&&", "||", ";", "&"}  # where a shown command line ends

#: Python blocks of docs pages (other than writing-a-plugin.md) that are not run, by (page, first line), and why.
#: A new block is run unless it is listed here.
NOT_RUN = {
    ("colorize-and-export.md", "from PIL import Image"): "needs a trained run and the reader's photos",
}


def blocks(path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(path.read_text(encoding="utf-8"))]


def zoo_lines(code: str) -> list[list[str]]:
    """The `zoo ...` command lines of a bash block: continuations joined, comments dropped, and launchers
    (`torchrun ... -m zoo train ...`, `python -m zoo ...`, `ENV=1 zoo ...`) cut to the part from `zoo` on."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        ends = [i for i, w in enumerate(words) if w in SHELL_OPERATORS]
        words = words[:ends[0]] if ends else words
        if "zoo" in words:
            start = words.index("zoo")
            if start == 0 or words[start - 1] == "-m" or all("=" in w for w in words[:start]):
                out.append(words[start:])
    return out


def test_readme_links_to_docs_pages_that_exist():
    text = README.read_text(encoding="utf-8")
    targets = [t for t in LINK.findall(text) if "://" not in t]
    assert {t for t in targets if t.startswith("docs/") and t.endswith(".md")} >= {
        f"docs/{p.name}" for p in PAGES}, "a page in docs/ is not linked from the README"
    missing = [t for t in targets if not (REPO / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_docs_pages_link_to_files_that_exist(page):
    targets = [t for t in LINK.findall(page.read_text(encoding="utf-8")) if "://" not in t]
    missing = [t for t in targets if not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_readme_is_a_front_page():
    size = len(README.read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes; move detail into docs/ (limit {README_LIMIT})"
    assert (DOCS / "images" / "result.png").stat().st_size < 300_000


def shown_commands() -> list[tuple[str, list[str]]]:
    out = []
    for path in [README, *PAGES]:
        for lang, code in blocks(path):
            if lang == "bash":
                out += [(f"{path.relative_to(REPO)}: {shlex.join(argv)}", argv) for argv in zoo_lines(code)]
    return out


def rejected(argv: list[str]) -> str | None:
    """None when the real CLI parser accepts ``zoo ARGS...``, else what it printed."""
    from zoo.cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv[1:])
    except SystemExit as exc:  # `--help` and `--version` exit 0: the command is fine
        return f"exit {exc.code}: {err.getvalue().strip().splitlines()[-1]}" if exc.code else None
    return None


def test_every_shown_zoo_command_parses():
    commands = shown_commands()
    assert len(commands) >= 20, commands  # the README's five uses and the pages' examples are found
    bad = [f"{where} -> {why}" for where, argv in commands if (why := rejected(argv))]
    assert not bad, "the zoo CLI rejects these documented commands:\n" + "\n".join(bad)


def test_the_command_check_catches_a_made_up_flag():
    argv = zoo_lines("zoo train --gen unet \\\n  --no-such-flag 3   # a comment\n")[0]
    assert argv == ["zoo", "train", "--gen", "unet", "--no-such-flag", "3"]
    assert "unrecognized arguments: --no-such-flag 3" in rejected(argv)
    assert "required: --out" in rejected(["zoo", "colorize", "a.jpg", "--model", "runs/x"])
    assert rejected(argv[:4]) is None and rejected(["zoo", "train", "--help"]) is None


def test_launchers_are_cut_to_the_zoo_command():
    code = ("torchrun --nproc_per_node=4 -m zoo train --steps 3\n"
            "OMP_NUM_THREADS=1 zoo eval runs/a --json > scores.json\n"
            "pip install zoo\n"
            "python -m pytest  # zoo tests\n")
    assert zoo_lines(code) == [["zoo", "train", "--steps", "3"], ["zoo", "eval", "runs/a", "--json"]]


def python_blocks() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        if page.name == "writing-a-plugin.md":  # tests/test_tutorial.py runs it
            continue
        for lang, code in blocks(page):
            if lang == "python" and (page.name, code.splitlines()[0]) not in NOT_RUN:
                out.append((page.name, code))
    return out


def test_not_run_lists_only_blocks_that_exist():
    present = {(p.name, code.splitlines()[0]) for p in PAGES for lang, code in blocks(p) if lang == "python"}
    assert set(NOT_RUN) <= present


@pytest.mark.parametrize("page, code", python_blocks() or [pytest.param(None, None, marks=pytest.mark.skip(
    reason="no self-contained Python block in docs/ (besides writing-a-plugin.md)"))])
def test_self_contained_python_blocks_run(page, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"docs/{page}", "exec"), {"__name__": "__docs__"})


def test_help_of_zoo_and_of_every_command_prints():
    """``zoo --help`` and ``zoo COMMAND --help`` format every help string (a stray ``%`` in one breaks them all)."""
    from zoo.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"train", "colorize", "eval", "leaderboard"} <= set(commands)
    texts = {"zoo": parser.format_help(), **{name: sub.format_help() for name, sub in commands.items()}}
    assert "95 % intervals" in texts["zoo"]
    for name, text in texts.items():
        assert text.startswith("usage: "), name
    assert rejected(["zoo", "--help"]) is None
