"""Compile every ```python block of the given Markdown files (default: README.md
and examples/README.md), so the documented code at least parses.  Run by `make lint`."""

import re
import sys
from pathlib import Path

BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def main(paths: list[str]) -> int:
    failed = checked = 0
    for path in paths or ["README.md", "examples/README.md"]:
        text = Path(path).read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            line = text.count("\n", 0, m.start()) + 2
            checked += 1
            try:
                compile(m.group(1), f"{path}:{line}", "exec")
            except SyntaxError as e:
                failed += 1
                print(f"{path}:{line}: {e}", file=sys.stderr)
    print(f"snippets: {checked} python blocks compiled, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
