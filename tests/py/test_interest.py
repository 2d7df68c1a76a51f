"""The handler analysis that lets the loop skip events a handler provably ignores."""

import threading
import urllib.request

from cymongoose import (
    MG_EV_ACCEPT,
    MG_EV_CLOSE,
    MG_EV_HTTP_MSG,
    MG_EV_POLL,
    MG_EV_WAKEUP,
    Manager,
)
from cymongoose._interest import ALL, event_mask


def events(handler):
    mask = event_mask(handler)
    return ALL if mask == ALL else {e for e in range(64) if mask >> e & 1}


def test_if_elif_chain_names_its_events():
    def handler(conn, ev, data):
        """Docstrings are fine."""
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, b"ok")
        elif ev == MG_EV_WAKEUP:
            conn.reply(200, data)

    assert events(handler) == {MG_EV_HTTP_MSG, MG_EV_WAKEUP}


def test_in_or_and_guards():
    def handler(conn, ev, data):
        if ev in (MG_EV_ACCEPT, MG_EV_CLOSE) or ev == 7:
            print(ev)
        if MG_EV_HTTP_MSG == ev and data.uri == "/":
            pass

    assert events(handler) == {MG_EV_ACCEPT, MG_EV_CLOSE, 7, MG_EV_HTTP_MSG}


def test_methods_are_analysed():
    class Server:
        def on_event(self, conn, ev, data):
            if ev == MG_EV_HTTP_MSG:
                pass

    assert events(Server().on_event) == {MG_EV_HTTP_MSG}


def test_anything_else_gets_every_event():
    def with_else(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            pass
        else:
            print(ev)

    def with_statement(conn, ev, data):
        seen = []
        if ev == MG_EV_HTTP_MSG:
            seen.append(ev)

    def not_equal(conn, ev, data):
        if ev != MG_EV_POLL:
            pass

    def guard_not_first(conn, ev, data):
        if data and ev == MG_EV_HTTP_MSG:
            pass

    def unknown_name(conn, ev, data):
        if ev == NOT_DEFINED_ANYWHERE:  # noqa: F821
            pass

    for handler in (with_else, with_statement, not_equal, guard_not_first, unknown_name,
                    print, lambda c, e, d: None):
        assert events(handler) == ALL, handler


def test_poll_is_kept_when_named():
    def handler(conn, ev, data):
        if ev == MG_EV_POLL:
            pass

    assert events(handler) == {MG_EV_POLL}


def test_closures_are_analysed():
    def make():
        served = []

        def handler(conn, ev, data):
            if ev == MG_EV_HTTP_MSG:
                served.append(conn)

        return handler

    assert events(make()) == {MG_EV_HTTP_MSG}


def test_edited_source_is_not_trusted(tmp_path):
    # Code whose text no longer matches its bytecode gets every event.
    path = tmp_path / "mod.py"
    path.write_text("def handler(conn, ev, data):\n    if ev == 11:\n        pass\n")
    namespace = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    path.write_text("def handler(conn, ev, data):\n    if ev == 12:\n        pass\n")
    import linecache

    linecache.checkcache(str(path))
    assert events(namespace["handler"]) == ALL


def test_delivery_follows_the_analysis():
    seen = []

    def chain(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, b"chain")

    def everything(conn, ev, data):
        seen.append(ev)

    with Manager(chain) as mgr:
        listener = mgr.listen("http://127.0.0.1:0")
        watcher = mgr.listen("tcp://127.0.0.1:0", everything)
        mgr.poll(0)
        assert MG_EV_POLL in seen  # an unanalysable handler gets every event
        port = listener.local_addr[1]
        result = {}

        def fetch():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                result["body"] = r.read()

        t = threading.Thread(target=fetch)
        t.start()
        for _ in range(500):
            if not t.is_alive():
                break
            mgr.poll(10)
        t.join(5)
        assert result["body"] == b"chain"  # the analysed handler still gets its event
        watcher.set_handler(chain)
        seen.clear()
        mgr.poll(0)
        assert seen == []  # switched to the chain: no more POLL for it


TARGET = MG_EV_HTTP_MSG


def test_names_the_program_could_rebind_are_not_trusted():
    import types

    settings = types.SimpleNamespace(event=MG_EV_HTTP_MSG)

    def by_global(conn, ev, data):
        if ev == TARGET:
            pass

    def by_attribute(conn, ev, data):
        if ev == settings.event:
            pass

    import cymongoose

    def by_module_constant(conn, ev, data):
        if ev == cymongoose.MG_EV_HTTP_MSG or ev == 19:
            pass

    assert events(by_global) == ALL
    assert events(by_attribute) == ALL
    assert events(by_module_constant) == {MG_EV_HTTP_MSG, 19}
