"""Constants (SPEC 1.2), event_name / log_* (1.10), event data (1.3), event order
(2.5.2) and exception routing (2.1.4, Decision 9)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
import threading
import types

import pytest
from conftest import (
    HttpReader,
    Recorder,
    free_port,
    http_get,
    listen_free,
    poll_for,
    poll_until,
    raw_connect,
    serve,
    split_response,
    wait_until,
)

import cymongoose
from cymongoose import (
    MG_EV_ACCEPT,
    MG_EV_CLOSE,
    MG_EV_CONNECT,
    MG_EV_ERROR,
    MG_EV_HTTP_HDRS,
    MG_EV_HTTP_MSG,
    MG_EV_OPEN,
    MG_EV_POLL,
    MG_EV_READ,
    MG_EV_WAKEUP,
    MG_EV_WRITE,
    HttpMessage,
    event_name,
)

pytestmark = pytest.mark.timeout(60)

EVENTS = {
    "MG_EV_ERROR": 0, "MG_EV_OPEN": 1, "MG_EV_POLL": 2, "MG_EV_RESOLVE": 3,
    "MG_EV_CONNECT": 4, "MG_EV_ACCEPT": 5, "MG_EV_TLS_HS": 6, "MG_EV_READ": 7,
    "MG_EV_WRITE": 8, "MG_EV_CLOSE": 9, "MG_EV_HTTP_HDRS": 10, "MG_EV_HTTP_MSG": 11,
    "MG_EV_WS_OPEN": 12, "MG_EV_WS_MSG": 13, "MG_EV_WS_CTL": 14, "MG_EV_MQTT_CMD": 15,
    "MG_EV_MQTT_MSG": 16, "MG_EV_MQTT_OPEN": 17, "MG_EV_SNTP_TIME": 18, "MG_EV_WAKEUP": 19,
    "MG_EV_USER": 22,
}
OTHER_CONSTANTS = {
    "WEBSOCKET_OP_TEXT": 1, "WEBSOCKET_OP_BINARY": 2, "WEBSOCKET_OP_PING": 9,
    "WEBSOCKET_OP_PONG": 10,
    "MG_LL_NONE": 0, "MG_LL_ERROR": 1, "MG_LL_INFO": 2, "MG_LL_DEBUG": 3, "MG_LL_VERBOSE": 4,
    "MQTT_PROP_TYPE_BYTE": 0, "MQTT_PROP_TYPE_STRING": 1, "MQTT_PROP_TYPE_STRING_PAIR": 2,
    "MQTT_PROP_TYPE_BINARY_DATA": 3, "MQTT_PROP_TYPE_VARIABLE_INT": 4, "MQTT_PROP_TYPE_INT": 5,
    "MQTT_PROP_TYPE_SHORT": 6,
}
NOT_EXPORTED = ["MG_EV_MDNS_REQ", "MG_EV_MDNS_RESP", "WEBSOCKET_OP_CONTINUE",
                "WEBSOCKET_OP_CLOSE"]


# --------------------------------------------------------------------------
# Constants


@pytest.mark.parametrize("name,value", sorted({**EVENTS, **OTHER_CONSTANTS}.items()))
def test_constant_value_and_type(name, value):
    for mod in (cymongoose, cymongoose._mongoose):
        got = getattr(mod, name)
        assert type(got) is int, f"{mod.__name__}.{name} is {type(got)!r}"
        assert got == value


def test_event_constants_unique_and_complete():
    values = [getattr(cymongoose, n) for n in EVENTS]
    assert len(set(values)) == len(values) == 21


@pytest.mark.parametrize("name", NOT_EXPORTED)
def test_unexported_constants_absent(name):
    assert not hasattr(cymongoose, name)
    assert name not in getattr(cymongoose, "__all__", [])


def test_all_lists_constants_and_core_names():
    wanted = set(EVENTS) | set(OTHER_CONSTANTS) | {
        "Connection", "HttpMessage", "Manager", "Timer", "event_name", "log_get", "log_set"}
    for mod in (cymongoose, cymongoose._mongoose):
        exported = set(mod.__all__)
        missing = wanted - exported
        assert not missing, f"{mod.__name__}.__all__ lacks {sorted(missing)}"
        for name in mod.__all__:
            assert hasattr(mod, name), f"{mod.__name__}.__all__ names missing {name}"


def test_module_identity():
    assert cymongoose.HttpMessage is cymongoose._mongoose.HttpMessage
    assert cymongoose.Manager is cymongoose._mongoose.Manager
    assert isinstance(cymongoose.__version__, str) and cymongoose.__version__


# --------------------------------------------------------------------------
# event_name


@pytest.mark.parametrize("name,value", sorted(EVENTS.items()))
def test_event_name_known(name, value):
    assert event_name(value) == name


@pytest.mark.parametrize("value,expected", [
    (22, "MG_EV_USER"),
    (23, "MG_EV_USER+1"),
    (27, "MG_EV_USER+5"),
    (122, "MG_EV_USER+100"),
    (20, "MG_EV_UNKNOWN(20)"),
    (21, "MG_EV_UNKNOWN(21)"),
    (-1, "MG_EV_UNKNOWN(-1)"),
])
def test_event_name_user_and_unknown(value, expected):
    assert event_name(value) == expected


def test_event_name_returns_str():
    assert type(event_name(MG_EV_HTTP_MSG)) is str


# --------------------------------------------------------------------------
# Logging


def _run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, cwd=os.path.dirname(__file__))


def test_log_get_default_is_none_at_import():
    proc = _run_python("import cymongoose; print(cymongoose.log_get())")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"


def test_log_set_get_roundtrip():
    saved = cymongoose.log_get()
    try:
        for level in (cymongoose.MG_LL_DEBUG, cymongoose.MG_LL_ERROR, cymongoose.MG_LL_NONE):
            cymongoose.log_set(level)
            assert cymongoose.log_get() == level
            assert type(cymongoose.log_get()) is int
    finally:
        cymongoose.log_set(saved)


NOISE_SCRIPT = textwrap.dedent("""
    import socket, time, urllib.request
    import cymongoose
    from cymongoose import Manager, MG_EV_HTTP_MSG

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, "ok")

    m = Manager(handler, enable_wakeup=True)
    lst = m.listen("http://127.0.0.1:0")
    port = lst.local_addr[1]
    c = m.connect("tcp://127.0.0.1:%d" % REFUSED)     # refused -> MG_EV_ERROR
    bad = socket.create_connection(("127.0.0.1", port))
    bad.sendall(b"GET / HTTP/1.1\\r\\nX: a\\x01b\\r\\n\\r\\n")   # parse error
    good = socket.create_connection(("127.0.0.1", port))
    good.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    m.wakeup(lst.id, b"x" * 100000)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        m.poll(10)
    bad.close(); good.close()
    for _ in range(10):
        m.poll(10)
    m.close()
    print("done")
""")


def test_no_stderr_noise_at_default_log_level():
    code = NOISE_SCRIPT.replace("REFUSED", str(free_port()))
    proc = _run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n"
    assert proc.stderr == ""


# --------------------------------------------------------------------------
# Event -> data mapping (SPEC 1.3)


def test_event_data_types(make_manager):
    rec = Recorder(skip_poll=False, on={
        MG_EV_HTTP_MSG: lambda c, e, d: c.reply(200, "ok"),
    })
    m = make_manager(rec, enable_wakeup=True)
    lst, port = listen_free(m)
    refused = m.connect(f"tcp://127.0.0.1:{free_port()}")
    out = m.connect(f"tcp://127.0.0.1:{port}")  # raw client to our own HTTP listener
    m.wakeup(lst.id, b"wake")
    with serve(m):
        status, _, body = http_get(f"http://127.0.0.1:{port}/x")
        assert (status, body) == (200, b"ok")
        assert wait_until(lambda: rec.count(MG_EV_CLOSE, refused) == 1)
        assert wait_until(lambda: rec.count(MG_EV_CONNECT, out) == 1)
        assert wait_until(lambda: rec.count(MG_EV_WAKEUP, lst) == 1)
        assert wait_until(lambda: rec.count(MG_EV_CLOSE) >= 2)
    seen = set()
    for _conn, ev, data in list(rec.events):
        seen.add(ev)
        if ev == MG_EV_ERROR:
            assert type(data) is str and data
        elif ev in (MG_EV_HTTP_MSG, MG_EV_HTTP_HDRS):
            assert isinstance(data, HttpMessage)
        elif ev == MG_EV_WAKEUP:
            assert type(data) is bytes and data == b"wake"
        else:
            assert data is None, f"{event_name(ev)} carried {data!r}"
    for ev in (MG_EV_ERROR, MG_EV_OPEN, MG_EV_POLL, MG_EV_CONNECT, MG_EV_ACCEPT,
               MG_EV_READ, MG_EV_WRITE, MG_EV_CLOSE, MG_EV_HTTP_MSG, MG_EV_WAKEUP):
        assert ev in seen, f"{event_name(ev)} never seen"


# --------------------------------------------------------------------------
# Event order (SPEC 2.5.2)


def test_event_order_for_urllib_request(make_manager):
    seen_raw = {}

    def on_msg(conn, ev, hm):
        seen_raw["msg"] = conn.recv_data()
        conn.reply(200, "ordered")

    def on_read(conn, ev, data):
        seen_raw.setdefault("read_len", conn.recv_len)

    rec = Recorder(on={MG_EV_HTTP_MSG: on_msg, MG_EV_READ: on_read})
    m = make_manager(rec)
    lst, port = listen_free(m)
    with serve(m):
        status, _, body = http_get(f"http://127.0.0.1:{port}/order?x=1")
        assert (status, body) == (200, b"ordered")
        assert wait_until(lambda: rec.count(MG_EV_CLOSE) == 1)
    children = [c for c in rec.conns(MG_EV_ACCEPT)]
    assert len(children) == 1
    child = children[0]
    assert child is not lst
    seq = rec.evs(child, exclude=(MG_EV_WRITE, MG_EV_HTTP_HDRS))
    names = [event_name(e) for e in seq]
    assert seq[:4] == [MG_EV_OPEN, MG_EV_ACCEPT, MG_EV_HTTP_MSG, MG_EV_READ], names
    assert seq[-1] == MG_EV_CLOSE, names
    assert seq.count(MG_EV_CLOSE) == 1 and seq.count(MG_EV_OPEN) == 1, names
    assert set(seq[4:-1]) <= {MG_EV_READ}, names
    # Inside HTTP_MSG the raw request is still in the buffer; at READ it is consumed.
    assert seen_raw["msg"].startswith(b"GET /order?x=1 HTTP/1.1\r\n")
    assert seen_raw["read_len"] == 0


# --------------------------------------------------------------------------
# Exceptions (SPEC 2.1.4, Decision 9)


def _exc_server(make_manager, exc_factory, error_handler=None):
    raised = []

    def handler(conn, ev, hm):
        if ev == MG_EV_HTTP_MSG:
            if hm.uri == "/boom":
                exc = exc_factory()
                raised.append(exc)
                raise exc
            conn.reply(200, "still serving")

    m = make_manager(handler, error_handler=error_handler)
    _, port = listen_free(m)
    return m, port, raised


def _boom(port):
    s = raw_connect(port)
    s.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
    return s


def test_exception_goes_to_error_handler(make_manager, capsys):
    got = []
    m, port, raised = _exc_server(make_manager, lambda: ValueError("boom-1"), got.append)
    with serve(m):
        s = _boom(port)
        try:
            assert wait_until(lambda: got)
            status, _, body = http_get(f"http://127.0.0.1:{port}/ok")
            assert (status, body) == (200, b"still serving")
        finally:
            s.close()
    assert len(got) == 1 and got[0] is raised[0]
    assert "boom-1" not in capsys.readouterr().err


def test_error_handler_raising_prints_traceback(make_manager, capsys):
    calls = []

    def bad_error_handler(exc):
        calls.append(exc)
        raise RuntimeError("second-from-error-handler")

    m, port, _ = _exc_server(make_manager, lambda: ValueError("boom-2"), bad_error_handler)
    with serve(m):
        s = _boom(port)
        try:
            assert wait_until(lambda: calls)
            status, _, body = http_get(f"http://127.0.0.1:{port}/ok")
            assert (status, body) == (200, b"still serving")
        finally:
            s.close()
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "second-from-error-handler" in err


def test_exception_without_error_handler_prints_traceback(make_manager, capsys):
    m, port, raised = _exc_server(make_manager, lambda: ValueError("boom-3"))
    with serve(m):
        s = _boom(port)
        try:
            assert wait_until(lambda: raised)
            status, _, body = http_get(f"http://127.0.0.1:{port}/ok")
            assert (status, body) == (200, b"still serving")
        finally:
            s.close()
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "ValueError: boom-3" in err


def test_timer_exception_prints_traceback_not_error_handler(make_manager, capsys):
    got = []
    fired = []

    def cb():
        fired.append(1)
        raise ValueError("timer-boom")

    m = make_manager(error_handler=got.append)
    m.timer_add(0, cb)
    assert poll_until(m, lambda: fired)
    poll_for(m, 0.05)
    assert got == []
    err = capsys.readouterr().err
    assert "ValueError: timer-boom" in err


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_propagates_out_of_poll(make_manager, exc_type):
    state = {"raised": 0}
    got = []

    def handler(conn, ev, data):
        if ev == MG_EV_POLL and state["raised"] == 0:
            state["raised"] += 1
            raise exc_type("stop")

    m = make_manager(handler, error_handler=got.append)
    listen_free(m)
    with pytest.raises(exc_type):
        for _ in range(50):
            m.poll(10)
    assert state["raised"] == 1
    assert got == []
    # The poll guard is released: the manager polls (and closes) normally afterwards.
    m.poll(0)
    m.close()


def test_no_handler_events_dropped_connection_works(make_manager):
    m = make_manager()
    lst, port = listen_free(m, "tcp")
    s = raw_connect(port)
    try:
        assert poll_until(m, lambda: len(m.connections) == 2)
        s.sendall(b"hello")
        poll_for(m, 0.05)
        assert lst in m.connections
    finally:
        s.close()
    assert poll_until(m, lambda: len(m.connections) == 1)


def test_handler_called_positionally_on_poll_thread(make_manager):
    threads = set()

    def handler(*args, **kwargs):
        assert not kwargs
        assert len(args) == 3
        threads.add(threading.get_ident())

    m = make_manager(handler)
    listen_free(m)
    poll_for(m, 0.03)
    assert threads == {threading.get_ident()}


def test_reader_helper_sanity(make_manager):
    # Guard for the helpers other tests rely on: a reply is read back whole.
    m = make_manager(lambda c, e, d: c.reply(200, "abc") if e == MG_EV_HTTP_MSG else None)
    _, port = listen_free(m)
    with serve(m):
        s = raw_connect(port)
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            raw = HttpReader(s).read_response()
        finally:
            s.close()
    assert raw is not None
    status, _, body = split_response(raw)
    assert status == b"HTTP/1.1 200 OK" and body == b"abc"


# --------------------------------------------------------------------------
# Every event reaches the handler, however the handler tests `ev`
# (SPEC 2.1.1 handler looked up at event time; 2.3.3 POLL on every poll).

_TARGET_EVENT = MG_EV_READ  # rebound by test_handler_comparing_with_rebound_global
_HITS: list[int] = []
_SETTINGS = types.SimpleNamespace(event=MG_EV_READ)


def _global_target_handler(conn, ev, data):
    if ev == _TARGET_EVENT:
        _HITS.append(ev)


def _attribute_target_handler(conn, ev, data):
    if ev == _SETTINGS.event:
        _HITS.append(ev)


def test_handler_comparing_with_rebound_global(make_manager):
    global _TARGET_EVENT
    _HITS.clear()
    m = make_manager(_global_target_handler)
    listen_free(m)
    poll_for(m, 0.03)
    assert _HITS == []
    _TARGET_EVENT = MG_EV_POLL
    try:
        m.poll(10)
        assert MG_EV_POLL in _HITS, "handler was not called for MG_EV_POLL"
    finally:
        _TARGET_EVENT = MG_EV_READ
        _HITS.clear()


def test_handler_comparing_with_mutable_attribute(make_manager):
    _HITS.clear()
    m = make_manager()
    listen_free(m, handler=_attribute_target_handler)
    poll_for(m, 0.03)
    assert _HITS == []
    _SETTINGS.event = MG_EV_POLL
    try:
        m.poll(10)
        assert MG_EV_POLL in _HITS, "handler was not called for MG_EV_POLL"
    finally:
        _SETTINGS.event = MG_EV_READ
        _HITS.clear()


class _Dispatch:
    def __init__(self):
        self.hits = []
        self.table = {MG_EV_POLL: self.hits.append}

    def method_handler(self, conn, ev, data):
        if ev == MG_EV_POLL:
            self.hits.append(ev)

    def __call__(self, conn, ev, data):
        self.table.get(ev, lambda e: None)(ev)


@pytest.mark.parametrize("kind", ["callable-object", "bound-method", "partial", "lambda"])
def test_handler_shapes_all_receive_poll(make_manager, kind):
    d = _Dispatch()
    handler = {
        "callable-object": d,
        "bound-method": d.method_handler,
        "partial": functools.partial(lambda tag, c, e, x: d.hits.append(e), "tag"),
        "lambda": lambda c, e, x: d.hits.append(e) if e == MG_EV_POLL else None,
    }[kind]
    m = make_manager(handler)
    listen_free(m)
    m.poll(10)
    assert MG_EV_POLL in d.hits
