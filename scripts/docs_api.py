"""The public API as the documentation sees it, read from the installed package.

Used by the site's hooks (scripts/docs_hooks.py: the constants tables, the reference
of names that no page lists yet) and by tests/py/test_docs_api.py (docstrings), so
both agree on what "public" means:

- the names of ``__all__`` of ``cymongoose`` and of its public submodules
  (``cymongoose.aio``, ``.wsgi``, ``.asgi``) that exist;
- for a class, the attributes it defines itself whose names do not start with ``_``;
- int constants have no docstring of their own: they get a table.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference"
SUBMODULES = ("cymongoose.aio", "cymongoose.wsgi", "cymongoose.asgi")


def modules() -> list[str]:
    """cymongoose and those of its public submodules that exist."""
    return ["cymongoose"] + [m for m in SUBMODULES if importlib.util.find_spec(m) is not None]


def is_constant(obj: object) -> bool:
    return isinstance(obj, (int, float, str, bytes)) and not callable(obj)


def public_names(module_name: str) -> list[tuple[str, object]]:
    """(dotted path, object) for each name of the module's ``__all__``."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if not names:
        raise ValueError(f"{module_name} has no __all__")
    return [(f"{module_name}.{n}", getattr(module, n)) for n in names]


def class_members(cls: type) -> list[tuple[str, object]]:
    """The public attributes a class defines itself (not those of object)."""
    return [(k, v) for k, v in vars(cls).items() if not k.startswith("_")]


def doc_of(obj: object) -> str:
    return (inspect.getdoc(obj) or "").strip()


def undocumented(module_name: str) -> list[str]:
    """Public names (and class members) of a module without a docstring at run time."""
    missing = []
    for path, obj in public_names(module_name):
        if is_constant(obj):
            continue
        if not doc_of(obj):
            missing.append(path)
        if inspect.isclass(obj):
            missing += [f"{path}.{name}" for name, member in class_members(obj)
                         if not is_constant(member) and not doc_of(member)]
    return missing


def reference_targets(reference: Path = REFERENCE) -> list[str]:
    """Every ``::: dotted.name`` written on the reference pages."""
    targets = []
    for page in sorted(reference.glob("*.md")):
        targets += re.findall(r"^:::\s*([\w.]+)", page.read_text(encoding="utf-8"), re.M)
    return targets


def resolve(path: str) -> object:
    module_name, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


def unlisted(reference: Path = REFERENCE) -> list[str]:
    """Public names (not constants) that no reference page lists: a feature that just
    landed.  The site shows them on the reference's overview until a page of their own
    lists them.  A re-export counts as listed when its object is."""
    listed = {id(resolve(t)) for t in reference_targets(reference)}
    out = []
    for module_name in modules():
        for path, obj in public_names(module_name):
            if is_constant(obj) or id(obj) in listed:
                continue
            listed.add(id(obj))
            out.append(path)
    return out


# ---------------------------------------------------------------------------
# The constants tables

CONSTANT_GROUPS = [
    ("Events (`ev` of `handler(conn, ev, data)`)", "MG_EV_", "`data` passed to the handler", {
        "MG_EV_ERROR": "`str`: what went wrong; the connection then closes",
        "MG_EV_OPEN": "`None`: a connection object was created",
        "MG_EV_POLL": "`None`: once per loop iteration, to connections that want it",
        "MG_EV_RESOLVE": "`None`: a name lookup finished (`remote_addr` is set)",
        "MG_EV_CONNECT": "`None`: an outbound connection is established",
        "MG_EV_ACCEPT": "`None`: a listener accepted this connection",
        "MG_EV_TLS_HS": "`None`: the TLS handshake finished",
        "MG_EV_READ": "`None`: bytes arrived (`conn.recv_data()`)",
        "MG_EV_WRITE": "`None`: bytes were written to the socket",
        "MG_EV_CLOSE": "`None`: the connection is closed; the last event it gets",
        "MG_EV_HTTP_HDRS": "`HttpMessage`: the head of a request or response",
        "MG_EV_HTTP_MSG": "`HttpMessage`: a whole request (server) or response (client)",
        "MG_EV_WS_OPEN": "`HttpMessage`: a WebSocket handshake finished",
        "MG_EV_WS_MSG": "`WsMessage`: a WebSocket message",
        "MG_EV_WS_CTL": "`None`: a WebSocket control frame",
        "MG_EV_MQTT_CMD": "`MqttMessage`: any MQTT packet",
        "MG_EV_MQTT_MSG": "`MqttMessage`: an MQTT PUBLISH",
        "MG_EV_MQTT_OPEN": "`int`: the CONNACK return code (0: accepted)",
        "MG_EV_SNTP_TIME": "`int`: milliseconds since the Unix epoch",
        "MG_EV_WAKEUP": "`bytes`: the payload given to `Manager.wakeup()`",
        "MG_EV_USER": "the first number free for events of your own",
    }),
    ("Log levels (`log_set`, `log_get`)", "MG_LL_", "logs", {
        "MG_LL_NONE": "nothing (the default)",
        "MG_LL_ERROR": "errors",
        "MG_LL_INFO": "errors and notable events",
        "MG_LL_DEBUG": "also debugging detail",
        "MG_LL_VERBOSE": "everything",
    }),
    ("WebSocket opcodes (`ws_send(data, op)`)", "WEBSOCKET_OP_", "frame", {
        "WEBSOCKET_OP_TEXT": "a UTF-8 text message",
        "WEBSOCKET_OP_BINARY": "a binary message",
        "WEBSOCKET_OP_PING": "a ping (answered with a pong)",
        "WEBSOCKET_OP_PONG": "a pong",
    }),
    ("MQTT 5 property types", "MQTT_PROP_TYPE_", "encoding", {
        "MQTT_PROP_TYPE_BYTE": "one byte",
        "MQTT_PROP_TYPE_STRING": "a UTF-8 string",
        "MQTT_PROP_TYPE_STRING_PAIR": "a pair of UTF-8 strings",
        "MQTT_PROP_TYPE_BINARY_DATA": "binary data",
        "MQTT_PROP_TYPE_VARIABLE_INT": "a variable-length integer",
        "MQTT_PROP_TYPE_INT": "a four-byte integer",
        "MQTT_PROP_TYPE_SHORT": "a two-byte integer",
    }),
]


def int_constants() -> dict[str, int]:
    """The int constants of ``cymongoose.__all__``, by name."""
    return {path.rpartition(".")[2]: obj for path, obj in public_names("cymongoose")
            if isinstance(obj, int) and not isinstance(obj, bool)}


def constants_tables() -> str:
    """Markdown tables of every int constant: name, value, meaning.  ValueError if a
    constant has no group or no description here."""
    consts = int_constants()
    out: list[str] = []
    shown: set[str] = set()
    for title, prefix, column, meanings in CONSTANT_GROUPS:
        names = sorted((n for n in consts if n.startswith(prefix)), key=lambda n: (consts[n], n))
        if not names:
            continue
        undescribed = [n for n in names if n not in meanings]
        if undescribed:
            raise ValueError(f"constants without a description in scripts/docs_api.py: "
                             f"{undescribed}")
        out += [f"## {title}", "", f"| name | value | {column} |", "| --- | ---: | --- |"]
        out += [f"| `{n}` | {consts[n]} | {meanings[n]} |" for n in names]
        out.append("")
        shown.update(names)
    left = sorted(set(consts) - shown)
    if left:
        raise ValueError(f"int constants in no group of scripts/docs_api.py: {left}")
    return "\n".join(out)
