"""The API reference is complete: every public name has a docstring and a place.

The site's reference (docs/reference/*.md) is generated from the installed package:
signatures from the stubs, descriptions from the docstrings at run time
(scripts/griffe_runtime_docs.py).  A public class, function, method or property
without a docstring would show there as a bare signature: these tests fail instead.
"Public" is what scripts/docs_api.py says: the names of `__all__` of cymongoose and
of its submodules aio/wsgi/asgi once they exist, and the members of those classes
not starting with `_`.  The int constants have no docstrings of their own; they get
a table (docs/reference/constants.md, generated from the package).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import docs_api  # noqa: E402


@pytest.mark.parametrize("module_name", docs_api.modules())
def test_every_public_name_has_a_docstring(module_name):
    assert docs_api.undocumented(module_name) == []


def test_the_check_sees_a_missing_docstring(monkeypatch):
    import cymongoose

    def bare(x):
        return x

    class Bare:
        """A class with one undocumented method and one documented property."""

        def method(self):
            pass

        @property
        def prop(self):
            """Documented."""

    monkeypatch.setattr(cymongoose, "__all__", [*cymongoose.__all__, "bare", "Bare"])
    monkeypatch.setattr(cymongoose, "bare", bare, raising=False)
    monkeypatch.setattr(cymongoose, "Bare", Bare, raising=False)
    assert docs_api.undocumented("cymongoose") == ["cymongoose.bare", "cymongoose.Bare.method"]


def test_reference_pages_name_existing_objects():
    targets = docs_api.reference_targets()
    assert len(targets) >= 30, targets
    for target in targets:
        try:
            docs_api.resolve(target)
        except (ImportError, AttributeError):
            pytest.fail(f"docs/reference names {target}, which does not exist")


def test_every_public_name_has_a_place_on_the_site():
    # Those on no page of their own are gathered on the overview by the build.
    assert "<!-- api: unlisted -->" in (docs_api.REFERENCE / "index.md").read_text()
    assert "<!-- constants-table -->" in (docs_api.REFERENCE / "constants.md").read_text()
    listed = {id(docs_api.resolve(t)) for t in docs_api.reference_targets()}
    for path in docs_api.unlisted():
        assert id(docs_api.resolve(path)) not in listed


def test_constants_table_has_every_constant():
    import cymongoose

    table = docs_api.constants_tables()
    constants = [n for n in cymongoose.__all__ if isinstance(getattr(cymongoose, n), int)]
    assert len(constants) >= 30
    for name in constants:
        assert f"| `{name}` | {getattr(cymongoose, name)} |" in table
