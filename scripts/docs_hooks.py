"""mkdocs hooks (mkdocs.yml `hooks:`): what the site needs beyond Markdown.

- Mermaid without a CDN.  Material loads mermaid.js from a CDN when the page has
  no ``mermaid`` global; we ship the script ourselves, copied at build time from
  the pinned ``mermaidx`` package (requirements-docs.txt), which carries the
  unmodified MIT-licensed mermaid.min.js.  mkdocs.yml lists it in
  ``extra_javascript``, so the site renders its diagrams offline.
- Diagrams checked at build time: every ```mermaid block is parsed and laid out
  by the same mermaid.js (through mermaidx's embedded JavaScript engine); a
  diagram that does not render fails the build.
- The constants tables: ``<!-- constants-table -->`` in a page becomes the names
  and values of the int constants of ``cymongoose.__all__``, read from the
  installed package, so a value shown can never differ from the code.
- The benchmark results: ``<!-- bench-results -->`` becomes bench/RESULTS.md (what
  `make bench` last wrote) without its title, each heading one level down.
- Names no page lists yet: ``<!-- api: unlisted -->`` becomes a ``:::`` reference
  entry for each public name that no docs/reference page names (a feature that
  just landed), so every public name is on the site (scripts/docs_api.py).
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

sys.path.insert(0, str(Path(__file__).resolve().parent))
import docs_api  # noqa: E402

MERMAID_JS = "assets/javascripts/mermaid.min.js"
MERMAID_BLOCK = re.compile(r"^```mermaid\n(.*?)^```", re.M | re.S)

def mermaid_source() -> Path:
    try:
        import mermaidx
    except ImportError as exc:
        raise PluginError(
            "mermaidx is missing: install requirements-docs.txt (make docs does)"
        ) from exc
    path = Path(mermaidx.__file__).parent / "assets" / "mermaid.js"
    if not path.is_file():
        raise PluginError(f"{path} not found: has mermaidx changed its layout?")
    return path


def on_files(files, config, **kwargs):
    files.append(File.generated(config, MERMAID_JS, abs_src_path=str(mermaid_source())))
    return files


_checked: dict[str, str | None] = {}


def check_diagram(source: str) -> str | None:
    """None if mermaid renders `source`, else its error (cached by content)."""
    key = hashlib.sha256(source.encode()).hexdigest()
    if key not in _checked:
        import mermaidx

        try:
            mermaidx.render(source).svg()
            _checked[key] = None
        except Exception as exc:  # noqa: BLE001 - any failure of the renderer is the answer
            _checked[key] = "\n".join(str(exc).splitlines()[:4]) or type(exc).__name__
    return _checked[key]


def on_page_markdown(markdown, page, config, files, **kwargs):
    for m in MERMAID_BLOCK.finditer(markdown):
        error = check_diagram(m.group(1))
        if error is not None:
            line = markdown.count("\n", 0, m.start()) + 1
            where = f"{page.file.src_path}:{line}"
            raise PluginError(f"{where}: the mermaid diagram does not render: {error}")
    try:
        if "<!-- constants-table -->" in markdown:
            markdown = markdown.replace("<!-- constants-table -->", docs_api.constants_tables())
        if "<!-- bench-results -->" in markdown:
            markdown = markdown.replace("<!-- bench-results -->", bench_results())
        if "<!-- api: unlisted -->" in markdown:
            markdown = markdown.replace("<!-- api: unlisted -->", unlisted_section())
    except ValueError as exc:
        raise PluginError(f"{page.file.src_path}: {exc}") from exc
    return markdown


def bench_results() -> str:
    path = Path(__file__).resolve().parents[1] / "bench" / "RESULTS.md"
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].startswith("# "):
        raise ValueError(f"{path} does not start with its title")
    out = []
    in_code = False
    for line in lines[1:]:
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and re.match(r"#{1,5} ", line):
            line = "#" + line
        out.append(line)
    return "\n".join(out)


def unlisted_section() -> str:
    names = docs_api.unlisted()
    if not names:
        return ""
    lines = ["## Not yet on a page of their own", "",
             "Names that landed after the pages above were written.", ""]
    for path in names:
        lines += [f"::: {path}", "    options:", "      heading_level: 3", ""]
    return "\n".join(lines)
