"""Rpc / RpcReq (SPEC 1.9): JSON-RPC 2.0 dispatch with mg_rpc semantics.
Every response is also checked to be valid JSON (json.loads)."""

from __future__ import annotations

import gc
import json
import sys
import weakref

import pytest

import cymongoose
from cymongoose import Rpc, RpcReq


def call(rpc: Rpc, frame: str | bytes) -> dict | None:
    """process() and decode: None for an empty response."""
    out = rpc.process(frame)
    assert isinstance(out, str)
    return json.loads(out) if out else None


def frame(method: str, id_: object = 1, **extra: object) -> str:
    doc: dict[str, object] = {"jsonrpc": "2.0", "method": method, **extra}
    if id_ is not None:
        doc["id"] = id_
    return json.dumps(doc)


@pytest.fixture
def rpc() -> Rpc:
    r = Rpc()
    r.add("sum", lambda req: req.ok(str(sum(json.loads(req.frame)["params"]))))
    r.add("echo", lambda req: req.ok(json.dumps(json.loads(req.frame).get("params"))))
    r.add("fail", lambda req: req.err(42, "custom failure"))
    return r


def test_exported_types():
    assert "Rpc" in cymongoose.__all__ and "RpcReq" in cymongoose.__all__
    assert Rpc.__module__ == "cymongoose._mongoose"
    assert RpcReq.__module__ == "cymongoose._mongoose"
    with pytest.raises(TypeError):
        RpcReq()
    with pytest.raises(TypeError):
        Rpc(1)
    with pytest.raises(TypeError):
        Rpc.some_new_attribute = 1  # immutable, like a static type


def test_ok_exact_format(rpc):
    out = rpc.process('{"id":1,"method":"sum","params":[1,2,3]}')
    assert out == '{"id":1,"result":6}'
    out = rpc.process('{"id":7,"method":"echo","params":{"a":[1,"x"]}}')
    assert out == '{"id":7,"result":{"a": [1, "x"]}}'
    assert json.loads(out) == {"id": 7, "result": {"a": [1, "x"]}}


def test_err_exact_format(rpc):
    assert rpc.process('{"id":3,"method":"fail"}') == (
        '{"id":3,"error":{"code":42,"message":"custom failure"}}'
    )


IDS = ["1", "0", "-5", "1.5", "1e3", '"abc"', '"a\\"b"', "null", "[1]"]


@pytest.mark.parametrize("raw_id", IDS)
def test_id_echoed_verbatim(rpc, raw_id):
    out = rpc.process(f'{{"id": {raw_id}, "method": "sum", "params": [2]}}')
    assert out == f'{{"id":{raw_id},"result":2}}'
    assert json.loads(out)["id"] == json.loads(raw_id)


def test_notification_ok_gives_empty_response(rpc):
    assert rpc.process(frame("sum", None, params=[1])) == ""


def test_notification_errors_still_reported(rpc):
    assert call(rpc, frame("fail", None)) == {"error": {"code": 42, "message": "custom failure"}}
    not_found = {"code": -32601, "message": "nope not found"}
    assert call(rpc, frame("nope", None)) == {"error": not_found}


def test_unknown_method(rpc):
    assert rpc.process('{"id":1,"method":"nope"}') == (
        '{"id":1,"error":{"code":-32601,"message":"nope not found"}}'
    )


def test_unknown_method_name_is_escaped(rpc):
    out = call(rpc, frame('we"ird\\name\n'))
    assert out == {"id": 1, "error": {"code": -32601, "message": 'we"ird\\name\n not found'}}


@pytest.mark.parametrize(
    "text",
    ['{"id":1}', "{}", "[]", "not json at all", "", '{"id":2,"method":5}', '{"method":"sum"'],
)
def test_frame_without_method_is_parse_error(rpc, text):
    out = call(rpc, text)
    assert out["error"] == {"code": -32700, "message": text}
    if text == '{"id":2,"method":5}':
        assert out["id"] == 2
    assert "id" not in out or text.startswith('{"id"')


def test_parse_error_message_escaping():
    text = 'x"\\\n\t\x01\x1f\u00e9\U0001f600'
    out = Rpc().process(text)
    assert json.loads(out) == {"error": {"code": -32700, "message": text}}
    assert "\\u0001" in out and "\\u001f" in out and '\\"' in out
    assert "\n" not in out and "\t" not in out


def test_response_frames_are_ignored(rpc):
    assert rpc.process('{"id":1,"result":5}') == ""
    assert rpc.process('{"id":1,"error":{"code":1,"message":"x"}}') == ""


def test_handler_exception_becomes_internal_error():
    rpc = Rpc()

    def boom(req):
        raise ValueError('it broke: "quoted"')

    rpc.add("boom", boom)
    assert call(rpc, frame("boom", 9)) == {
        "id": 9,
        "error": {"code": -32603, "message": 'it broke: "quoted"'},
    }


def test_handler_exception_after_response_keeps_response():
    rpc = Rpc()
    seen = []

    def late(req):
        req.ok("true")
        raise RuntimeError("after the fact")

    rpc.add("late", late)
    old = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(u.exc_value)
    try:
        assert rpc.process(frame("late")) == '{"id":1,"result":true}'
    finally:
        sys.unraisablehook = old
    assert len(seen) == 1 and str(seen[0]) == "after the fact"  # reported, not lost


def test_base_exception_propagates():
    rpc = Rpc()

    def stop(req):
        raise KeyboardInterrupt

    rpc.add("stop", stop)
    with pytest.raises(KeyboardInterrupt):
        rpc.process(frame("stop"))


def test_handler_without_response():
    rpc = Rpc()
    rpc.add("silent", lambda req: None)
    assert rpc.process(frame("silent", 4)) == (
        '{"id":4,"error":{"code":-32603,"message":"handler produced no response"}}'
    )


def test_second_response_raises():
    rpc = Rpc()
    errors = []

    def twice(req):
        req.ok("1")
        for again in (lambda: req.ok("2"), lambda: req.err(1, "x")):
            with pytest.raises(RuntimeError, match="^Response already sent$"):
                again()
            errors.append(1)

    rpc.add("twice", twice)
    assert rpc.process(frame("twice")) == '{"id":1,"result":1}'
    assert errors == [1, 1]


def test_request_invalid_after_handler():
    rpc = Rpc()
    kept = []
    rpc.add("keep", lambda req: (kept.append(req), req.ok("0")))
    rpc.process(frame("keep"))
    (req,) = kept
    assert isinstance(req, RpcReq)
    with pytest.raises(RuntimeError, match="^RpcReq is no longer valid$"):
        req.ok("1")
    with pytest.raises(RuntimeError, match="^RpcReq is no longer valid$"):
        req.err(1, "x")
    with pytest.raises(RuntimeError, match="^RpcReq is no longer valid$"):
        req.frame  # noqa: B018


def test_request_invalid_even_without_response():
    rpc = Rpc()
    kept = []
    rpc.add("keep", kept.append)
    rpc.process(frame("keep"))
    with pytest.raises(RuntimeError, match="no longer valid"):
        kept[0].ok("1")


def test_frame_property_and_bytes_input():
    rpc = Rpc()
    frames = []
    rpc.add("f", lambda req: (frames.append(req.frame), req.ok("null")))
    text = '{"id":1,"method":"f","params":"\u00e9"}'
    for data in (text, text.encode(), bytearray(text.encode()), memoryview(text.encode())):
        assert rpc.process(data) == '{"id":1,"result":null}'
    assert frames == [text] * 4
    with pytest.raises(TypeError, match="frame"):
        rpc.process(42)


def test_non_utf8_bytes_frame():
    out = Rpc().process(b'{"x":"\xff"')
    assert json.loads(out)["error"]["code"] == -32700


def test_err_message_escaping_round_trips():
    message = 'quote " backslash \\ nl \n tab \t ctrl \x00\x01\x7f \u00e9 \u20ac \U0001f600'
    rpc = Rpc()
    rpc.add("e", lambda req: req.err(-1, message))
    out = rpc.process(frame("e"))
    assert json.loads(out) == {"id": 1, "error": {"code": -1, "message": message}}


def test_err_codes():
    rpc = Rpc()
    codes = iter([0, -32000, 2**40, True])
    rpc.add("e", lambda req: req.err(next(codes), "m"))
    assert json.loads(rpc.process(frame("e")))["error"]["code"] == 0
    assert json.loads(rpc.process(frame("e")))["error"]["code"] == -32000
    assert json.loads(rpc.process(frame("e")))["error"]["code"] == 2**40
    assert json.loads(rpc.process(frame("e")))["error"]["code"] == 1


def test_ok_and_err_argument_errors():
    rpc = Rpc()
    checks = []

    def h(req):
        with pytest.raises(TypeError, match="result_json"):
            req.ok(5)
        with pytest.raises(TypeError, match="code"):
            req.err("1", "m")
        with pytest.raises(TypeError, match="message"):
            req.err(1, None)
        with pytest.raises(OverflowError):
            req.err(1 << 80, "m")
        checks.append(True)
        req.ok(result_json='"fine"')

    rpc.add("h", h)
    assert rpc.process(frame("h")) == '{"id":1,"result":"fine"}'
    assert checks == [True]


def test_glob_patterns_newest_first():
    rpc = Rpc()
    rpc.add("user.*", lambda req: req.ok('"any user"'))
    rpc.add("user.get", lambda req: req.ok('"get"'))
    rpc.add("#", lambda req: req.ok('"catch-all"'))
    assert json.loads(rpc.process(frame("user.get")))["result"] == "catch-all"

    rpc = Rpc()
    rpc.add("#", lambda req: req.ok('"catch-all"'))
    rpc.add("user.*", lambda req: req.ok('"any user"'))
    rpc.add("user.get", lambda req: req.ok('"get"'))
    assert json.loads(rpc.process(frame("user.get")))["result"] == "get"
    assert json.loads(rpc.process(frame("user.set")))["result"] == "any user"
    assert json.loads(rpc.process(frame("user.a/b")))["result"] == "catch-all"
    assert json.loads(rpc.process(frame("v?")))["result"] == "catch-all"


def test_escaped_method_is_unescaped_before_matching():
    rpc = Rpc()
    rpc.add("a/b", lambda req: req.ok("1"))
    assert rpc.process('{"id":1,"method":"a\\/b"}') == '{"id":1,"result":1}'
    assert rpc.process('{"id":1,"method":"\\u0061/b"}') == '{"id":1,"result":1}'


def test_methods_property():
    rpc = Rpc()
    assert rpc.methods == []
    for name in ("a", "", "b.*", "a"):
        rpc.add(name, lambda req: req.ok("0"))
    assert rpc.methods == ["a", "b.*", "a"]
    m = rpc.methods
    m.append("x")  # a copy
    assert rpc.methods == ["a", "b.*", "a"]


def test_empty_pattern_matches_empty_method_only():
    rpc = Rpc()
    rpc.add("", lambda req: req.ok('"empty"'))
    assert json.loads(rpc.process(frame("")))["result"] == "empty"
    assert json.loads(rpc.process(frame("x")))["error"]["code"] == -32601


def test_add_argument_errors():
    rpc = Rpc()
    with pytest.raises(TypeError, match="method"):
        rpc.add(b"x", lambda req: None)
    with pytest.raises(TypeError, match="handler"):
        rpc.add("x", None)
    with pytest.raises(UnicodeEncodeError):
        rpc.add("\ud800", lambda req: None)
    assert rpc.methods == []
    rpc.add(method="kw", handler=lambda req: req.ok("1"))
    assert rpc.methods == ["kw"]


def test_reentrant_process_and_add_inside_handler():
    rpc = Rpc()
    rpc.add("inner", lambda req: req.ok("10"))

    def outer(req):
        inner = json.loads(rpc.process(frame("inner", 2)))["result"]
        rpc.add("outer", lambda r: r.ok("0"))  # re-registers while running
        req.ok(str(inner + 1))

    rpc.add("outer", outer)
    assert rpc.process(frame("outer")) == '{"id":1,"result":11}'
    assert rpc.process(frame("outer")) == '{"id":1,"result":0}'


def test_rpc_cycle_is_collected():
    rpc = Rpc()
    box = {"rpc": rpc}  # box -> rpc -> handler -> box
    rpc.add("self", lambda req, box=box: req.ok(str(len(box["rpc"].methods))))
    assert rpc.process(frame("self")) == '{"id":1,"result":1}'
    ref = weakref.ref(rpc)
    del rpc, box
    gc.collect()
    assert ref() is None


def test_many_handlers_and_frames():
    rpc = Rpc()
    for i in range(200):
        rpc.add(f"m{i}", lambda req, i=i: req.ok(str(i)))
    for i in range(0, 200, 17):
        assert json.loads(rpc.process(frame(f"m{i}", i)))["result"] == i
    assert len(rpc.methods) == 200 and rpc.methods[0] == "m199"
