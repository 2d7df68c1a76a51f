"""A griffe extension for the API reference (mkdocs.yml, mkdocstrings `extensions:`).

The reference is read from two places, each the authority for one half:

- signatures from the type stubs, ``src/cymongoose/_mongoose.pyi`` (griffe visits
  them statically; ``mypy.stubtest`` in the test suite keeps them equal to the
  extension);
- docstrings from the installed extension at run time, the text ``help()`` shows,
  written in ``ext/*.c``.  A stub's own docstring is used only where the runtime
  object has none (tests/py/test_docs_api.py fails on any such name).

So the site shows what a user's type checker and ``help()`` show, and cannot drift
from either.  The package must be installed (``make install``) before ``mkdocs``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import griffe

# Packages whose compiled modules get their docstrings from the runtime objects.
PACKAGES = ("cymongoose",)


def runtime_object(path: str) -> Any:
    """The live object at a dotted griffe path, or None if there is none."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            # A class attribute through the class dict: a property's descriptor,
            # not the value it would compute.
            owner = obj
            obj = vars(owner).get(name) if isinstance(owner, type) else None
            if obj is None:
                obj = getattr(owner, name, None)
            if obj is None:
                return None
        return obj
    return None


def runtime_doc(obj: Any) -> str | None:
    if obj is None or isinstance(obj, (int, str, bytes, float)):
        return None
    doc = inspect.getdoc(obj)
    return doc.strip() if doc and doc.strip() else None


class RuntimeDocstrings(griffe.Extension):
    """Fill each object's docstring from the installed package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name not in PACKAGES:
            return
        try:
            importlib.import_module(pkg.name)
        except ImportError as exc:  # pragma: no cover - a set-up error, said plainly
            raise RuntimeError(
                f"the API reference needs {pkg.name} installed (make install): {exc}"
            ) from exc
        self._fill(pkg)

    def _fill(self, obj: griffe.Object) -> None:
        for member in obj.members.values():
            # Aliases are documented where they point; a dunder's runtime text is
            # CPython's generic one ("Initialize self. ...").
            if member.is_alias or member.name.startswith("__"):
                continue
            doc = runtime_doc(runtime_object(member.path))
            if doc is not None:
                member.docstring = griffe.Docstring(doc, parent=member)
            if member.is_module or member.is_class:
                self._fill(member)
