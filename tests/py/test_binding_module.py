"""The extension module itself: isolation (PEP 489/573), types, __all__, stubs."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import pathlib

import pytest

import cymongoose
from cymongoose import _mongoose

STUB = pathlib.Path(cymongoose.__file__).with_name("_mongoose.pyi")
if not STUB.exists():  # editable installs keep the stub in the source tree
    STUB = pathlib.Path(__file__).parents[2] / "src" / "cymongoose" / "_mongoose.pyi"

TYPES = ("Connection", "HttpMessage", "Manager", "Timer")


def public_runtime_names() -> set[str]:
    return {n for n in dir(_mongoose) if not n.startswith("_")}


def stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text())


def stub_module_names() -> set[str]:
    names = set()
    for node in stub_tree().body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {n for n in names if not n.startswith("_")}


def stub_class_members(cls: str) -> set[str]:
    for node in stub_tree().body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            members = set()
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    members.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members.add(item.target.id)
            return members
    raise AssertionError(f"{cls} missing from the stub")


def test_all_matches_package_and_module():
    # SPEC 1.1: the package is the module plus AsyncManager (from cymongoose.aio).
    assert sorted([*_mongoose.__all__, "AsyncManager"]) == sorted(cymongoose.__all__)
    assert cymongoose.AsyncManager is __import__("cymongoose.aio").aio.AsyncManager
    assert len(set(_mongoose.__all__)) == len(_mongoose.__all__)
    for name in _mongoose.__all__:
        assert getattr(cymongoose, name) is getattr(_mongoose, name)
    assert public_runtime_names() == set(_mongoose.__all__)


def test_version():
    assert cymongoose.__version__ == "0.1.0"


def test_mdns_events_not_exported():
    assert not hasattr(_mongoose, "MG_EV_MDNS_REQ")
    assert not hasattr(_mongoose, "MG_EV_MDNS_RESP")
    assert _mongoose.MG_EV_USER == 22 and _mongoose.MG_EV_WAKEUP == 19


def test_stub_lists_every_runtime_name():
    assert stub_module_names() == public_runtime_names()


@pytest.mark.parametrize("cls", TYPES)
def test_stub_lists_every_class_member(cls):
    runtime = {n for n in dir(getattr(_mongoose, cls)) if not n.startswith("_")}
    stub = {n for n in stub_class_members(cls) if not n.startswith("_")}
    assert stub == runtime


@pytest.mark.parametrize("cls", TYPES)
def test_types_are_heap_types_of_this_module(cls):
    tp = getattr(_mongoose, cls)
    assert tp.__module__ == "cymongoose._mongoose"
    with pytest.raises(TypeError):
        tp.some_new_attribute = 1  # immutable, like a static type


def test_connection_and_timer_not_constructible():
    with pytest.raises(TypeError, match="Cannot create Connection instances"):
        _mongoose.Connection()
    with pytest.raises(TypeError):
        _mongoose.Timer()


def test_manager_is_subclassable():
    class MyManager(_mongoose.Manager):
        def __init__(self, handler=None):
            super().__init__(handler, enable_wakeup=False)
            self.tag = "mine"

    events = []
    m = MyManager(lambda c, ev, d: events.append(ev))
    try:
        m.listen("tcp://127.0.0.1:0")
        assert m.tag == "mine" and events == [_mongoose.MG_EV_OPEN]
    finally:
        m.close()


def test_second_module_instance_is_independent():
    # Multi-phase init: a second module object gets its own state and types.
    spec = importlib.util.find_spec("cymongoose._mongoose")
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    assert other is not _mongoose
    assert other.Manager is not _mongoose.Manager
    events = []
    m = other.Manager(lambda c, ev, d: events.append((type(c), ev)))
    try:
        m.listen("tcp://127.0.0.1:0")
        assert events == [(other.Connection, other.MG_EV_OPEN)]
        assert not isinstance(m.connections[0], _mongoose.Connection)
    finally:
        m.close()


def test_signatures_are_introspectable():
    assert str(inspect.signature(_mongoose.event_name)) == "(ev, /)"
    sig = inspect.signature(_mongoose.Manager.listen)
    assert list(sig.parameters)[:4] == ["self", "url", "handler", "http"]
    assert sig.parameters["http"].kind is inspect.Parameter.KEYWORD_ONLY
    assert sig.parameters["max_body"].kind is inspect.Parameter.KEYWORD_ONLY  # HTTP limits
    sig = inspect.signature(_mongoose.Manager.timer_add)
    assert sig.parameters["repeat"].kind is inspect.Parameter.KEYWORD_ONLY
