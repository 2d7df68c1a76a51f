"""The code blocks of our Markdown: found here, compiled by `make lint`, run by pytest.

`python scripts/check_snippets.py [FILE.md...]` compiles every ```python block of the
given files (default: README.md, examples/README.md and docs/**/*.md) and checks the
example markers below, so the documented code at least parses.
tests/py/test_docs_examples.py imports `blocks()` from here and runs the examples of
docs/**/*.md for real.

A marker is an HTML comment on the line just before a fence (invisible on the site):

    <!-- example: KIND -->

For a ```python block, KIND says how it runs (no marker: `program`):

- `program`  run as a script; it must exit 0.  A ```text block right after it,
             marked `<!-- example: output -->`, is what it must print.
- `server`   started as a script; once its ports accept connections, the ```console
             block that follows it is run: each `$ command` line, whose output must be
             the lines under it; then SIGINT, and it must exit 0 (having printed the
             `output` block after the console block, if there is one).
- `client`   like `program`, with a small HTTP server of the test's on its port
             (GET: `hello from the test server`, POST: the body echoed).
- `fragment` part of a program on purpose: only compiled.
- `file NAME` a module another example uses (an app for the command line): written
             as NAME into the scratch directory of the next example.

A ```console block marked `<!-- example: setup -->` runs (in the example's scratch
directory) before the next example; one marked `<!-- example: setup-page -->` before
every later example of its page (the certificates of the TLS guide).  One marked
`<!-- example: serve -->` is an example of its own, for the command line: its first
`$ command` is started as a server, the other commands are run and checked as for
`server`, then SIGINT.
In expected output, `...` matches any text.  Ports written as `127.0.0.1:N`,
`localhost:N`, `0.0.0.0:N` or `[::1]:N` are replaced, in the code and in its console
block alike, by free ports.
"""

from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("program", "server", "client", "fragment", "file")
CONSOLE_KINDS = ("setup", "setup-page", "serve")
TEXT_KINDS = ("output",)

FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.M | re.S
)
MARKER = re.compile(r"<!--\s*example:\s*(?P<kind>[\w-]+)(?:\s+(?P<arg>[\w./-]+))?\s*-->\s*$")


@dataclass
class Block:
    path: str
    line: int  # 1-based line of the first line of code
    lang: str
    code: str
    marker: str | None = None
    arg: str | None = None  # the NAME of `file NAME`


@dataclass
class Example:
    """A python block with what runs before and after it."""

    block: Block
    kind: str
    setup: list[Block] = field(default_factory=list)
    console: Block | None = None  # the session a server is exercised with
    output: Block | None = None  # what a program must print

    @property
    def id(self) -> str:
        return f"{self.block.path}:{self.block.line}"


def blocks(path: Path, root: Path = ROOT) -> list[Block]:
    """The fenced blocks of a Markdown file, in order, with their markers."""
    text = path.read_text(encoding="utf-8")
    try:
        rel = path.resolve().relative_to(root).as_posix()
    except ValueError:
        rel = str(path)
    found = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.search(before)
        indent = len(m.group("indent"))
        code = m.group("body")
        if indent:
            code = textwrap.dedent(code)
        found.append(Block(
            path=rel,
            line=text.count("\n", 0, m.start()) + 2,
            lang=m.group("lang"),
            code=code,
            marker=marker.group("kind") if marker else None,
            arg=marker.group("arg") if marker else None,
        ))
    return found


def examples(path: Path, root: Path = ROOT) -> list[Example]:
    """The python blocks of a page as examples, with their setup, console and output."""
    out: list[Example] = []
    setup: list[Block] = []
    page_setup: list[Block] = []
    for b in blocks(path, root):
        if b.lang == "python" and b.marker == "file":
            setup.append(b)
        elif b.lang == "python" or (b.lang == "console" and b.marker == "serve"):
            out.append(Example(b, b.marker or "program", page_setup + setup))
            setup = []
        elif b.lang == "console" and b.marker == "setup-page":
            page_setup.append(b)
        elif b.lang == "console" and b.marker == "setup":
            setup.append(b)
        elif b.lang == "console" and out and out[-1].kind == "server" and out[-1].console is None:
            out[-1].console = b
        elif b.lang == "text" and b.marker == "output" and out and out[-1].output is None:
            out[-1].output = b
    return out


def marker_errors(path: Path, root: Path = ROOT) -> list[str]:
    """Markers that name no kind, or kinds whose companion block is missing."""
    errors = []
    for b in blocks(path, root):
        where = f"{b.path}:{b.line}"
        allowed = {"python": KINDS, "console": CONSOLE_KINDS, "text": TEXT_KINDS}.get(b.lang, ())
        if b.marker is not None and b.marker not in allowed:
            errors.append(f"{where}: marker '{b.marker}' on a ```{b.lang} block")
        if (b.marker == "file") != (b.arg is not None):
            errors.append(f"{where}: `file NAME` takes a name, other markers none")
    for ex in examples(path, root):
        if ex.kind == "server" and ex.console is None:
            errors.append(f"{ex.id}: a server example needs a ```console block after it")
    return errors


def markdown_files(paths: list[str]) -> list[Path]:
    if paths:
        return [Path(p) for p in paths]
    return [ROOT / "README.md", ROOT / "examples" / "README.md",
            *sorted((ROOT / "docs").rglob("*.md"))]


def main(paths: list[str]) -> int:
    failed = checked = 0
    for path in markdown_files(paths):
        for b in blocks(path):
            if b.lang != "python":
                continue
            checked += 1
            try:
                compile(b.code, f"{b.path}:{b.line}", "exec")
            except SyntaxError as e:
                failed += 1
                print(f"{b.path}:{b.line}: {e}", file=sys.stderr)
        for error in marker_errors(path):
            failed += 1
            print(error, file=sys.stderr)
    print(f"snippets: {checked} python blocks compiled, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
