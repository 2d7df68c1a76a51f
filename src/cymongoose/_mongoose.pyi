"""Type stubs for cymongoose._mongoose, the C extension (kept in step with ext/)."""

from collections.abc import Callable
from os import PathLike
from types import TracebackType
from typing import Any, Final, final

from typing_extensions import Buffer, Self, disjoint_base

__all__ = [
    "Connection",
    "HttpMessage",
    "MG_EV_ACCEPT",
    "MG_EV_CLOSE",
    "MG_EV_CONNECT",
    "MG_EV_ERROR",
    "MG_EV_HTTP_HDRS",
    "MG_EV_HTTP_MSG",
    "MG_EV_MQTT_CMD",
    "MG_EV_MQTT_MSG",
    "MG_EV_MQTT_OPEN",
    "MG_EV_OPEN",
    "MG_EV_POLL",
    "MG_EV_READ",
    "MG_EV_RESOLVE",
    "MG_EV_SNTP_TIME",
    "MG_EV_TLS_HS",
    "MG_EV_USER",
    "MG_EV_WAKEUP",
    "MG_EV_WRITE",
    "MG_EV_WS_CTL",
    "MG_EV_WS_MSG",
    "MG_EV_WS_OPEN",
    "MG_LL_DEBUG",
    "MG_LL_ERROR",
    "MG_LL_INFO",
    "MG_LL_NONE",
    "MG_LL_VERBOSE",
    "MqttMessage",
    "MQTT_PROP_TYPE_BINARY_DATA",
    "MQTT_PROP_TYPE_BYTE",
    "MQTT_PROP_TYPE_INT",
    "MQTT_PROP_TYPE_SHORT",
    "MQTT_PROP_TYPE_STRING",
    "MQTT_PROP_TYPE_STRING_PAIR",
    "MQTT_PROP_TYPE_VARIABLE_INT",
    "Manager",
    "Rpc",
    "RpcReq",
    "Timer",
    "TlsOpts",
    "WsMessage",
    "WEBSOCKET_OP_BINARY",
    "WEBSOCKET_OP_PING",
    "WEBSOCKET_OP_PONG",
    "WEBSOCKET_OP_TEXT",
    "base64_decode",
    "base64_encode",
    "crc32",
    "event_name",
    "hmac_sha256",
    "http_parse_multipart",
    "http_var",
    "json_get",
    "json_get_bool",
    "json_get_long",
    "json_get_num",
    "json_get_str",
    "log_get",
    "log_set",
    "match",
    "md5",
    "millis",
    "random_bytes",
    "random_str",
    "sha1",
    "sha256",
    "url_encode",
    "url_host",
    "url_is_ssl",
    "url_pass",
    "url_port",
    "url_uri",
    "url_user",
]

_Handler = Callable[[Connection, int, Any], object]

MG_EV_ERROR: Final[int]
MG_EV_OPEN: Final[int]
MG_EV_POLL: Final[int]
MG_EV_RESOLVE: Final[int]
MG_EV_CONNECT: Final[int]
MG_EV_ACCEPT: Final[int]
MG_EV_TLS_HS: Final[int]
MG_EV_READ: Final[int]
MG_EV_WRITE: Final[int]
MG_EV_CLOSE: Final[int]
MG_EV_HTTP_HDRS: Final[int]
MG_EV_HTTP_MSG: Final[int]
MG_EV_WS_OPEN: Final[int]
MG_EV_WS_MSG: Final[int]
MG_EV_WS_CTL: Final[int]
MG_EV_MQTT_CMD: Final[int]
MG_EV_MQTT_MSG: Final[int]
MG_EV_MQTT_OPEN: Final[int]
MG_EV_SNTP_TIME: Final[int]
MG_EV_WAKEUP: Final[int]
MG_EV_USER: Final[int]

WEBSOCKET_OP_TEXT: Final[int]
WEBSOCKET_OP_BINARY: Final[int]
WEBSOCKET_OP_PING: Final[int]
WEBSOCKET_OP_PONG: Final[int]

MQTT_PROP_TYPE_BYTE: Final[int]
MQTT_PROP_TYPE_STRING: Final[int]
MQTT_PROP_TYPE_STRING_PAIR: Final[int]
MQTT_PROP_TYPE_BINARY_DATA: Final[int]
MQTT_PROP_TYPE_VARIABLE_INT: Final[int]
MQTT_PROP_TYPE_INT: Final[int]
MQTT_PROP_TYPE_SHORT: Final[int]

MG_LL_NONE: Final[int]
MG_LL_ERROR: Final[int]
MG_LL_INFO: Final[int]
MG_LL_DEBUG: Final[int]
MG_LL_VERBOSE: Final[int]

@final
class HttpMessage:
    """A view of an HTTP message; valid only while its event handler runs (``copy()``
    gives one that stays valid)."""

    @property
    def method(self) -> str: ...
    @property
    def uri(self) -> str: ...
    @property
    def query(self) -> str: ...
    @property
    def proto(self) -> str: ...
    @property
    def body_bytes(self) -> bytes: ...
    @property
    def body_text(self) -> str: ...
    def header(self, name: str, default: str | None = None) -> str | None: ...
    def headers(self) -> list[tuple[str, str]]: ...
    def query_var(self, name: str, /) -> str | None: ...
    def status(self) -> int | None: ...
    def header_var(self, header_name: str, var_name: str) -> str | None: ...
    def copy(self) -> HttpMessage:
        """A detached HttpMessage that owns a copy of the request (head and body).

        It stays valid after the handler returns, so ``ws_upgrade()``, ``serve_file()``
        and ``serve_dir()`` can answer the request later (from a timer, a coroutine);
        every accessor works on it.  A copy's ``copy()`` is itself.  An invalid view
        raises ``ValueError("HttpMessage is not valid for this event")``."""
    def __bool__(self) -> bool: ...

@final
class WsMessage:
    """A WebSocket message; valid only while its event handler runs."""

    @property
    def data(self) -> bytes: ...
    @property
    def text(self) -> str: ...
    @property
    def flags(self) -> int:
        """The first frame byte: FIN | opcode (0x81 text, 0x82 binary)."""

@final
class MqttMessage:
    """A view of an MQTT packet; valid only while its event handler runs."""

    @property
    def topic(self) -> str:
        """Topic of a PUBLISH; the first topic filter of a SUBSCRIBE or UNSUBSCRIBE."""
    @property
    def data(self) -> bytes:
        """Payload of a PUBLISH; the encoded filters of a (UN)SUBSCRIBE; codes of a (UN)SUBACK."""
    @property
    def text(self) -> str: ...
    @property
    def id(self) -> int: ...
    @property
    def cmd(self) -> int: ...
    @property
    def qos(self) -> int: ...
    @property
    def ack(self) -> int: ...
    def properties(self) -> list[dict[str, Any]]:
        """MQTT 5 properties: dicts with ``id`` (int), ``iv`` (int), ``key`` and ``val`` (str)."""
    def __bool__(self) -> bool: ...

@final
class Connection:
    """A connection of a Manager; created only by the Manager."""

    @property
    def handler(self) -> _Handler | None: ...
    userdata: Any
    @property
    def id(self) -> int: ...
    @property
    def is_listening(self) -> bool: ...
    @property
    def is_closing(self) -> bool: ...
    @property
    def local_addr(self) -> tuple[str, int, bool] | None: ...
    @property
    def remote_addr(self) -> tuple[str, int, bool] | None: ...
    @property
    def is_client(self) -> bool: ...
    @property
    def is_tls(self) -> bool: ...
    @property
    def is_udp(self) -> bool: ...
    @property
    def is_websocket(self) -> bool: ...
    @property
    def ws_close_code(self) -> int | None:
        """The code of the peer's WebSocket close frame: 1005 if it had no code, 1006 if the
        connection ended without one (RFC 6455 7.1.5); None before.  Kept after MG_EV_CLOSE."""
    @property
    def is_readable(self) -> bool: ...
    @property
    def is_writable(self) -> bool: ...
    @property
    def is_full(self) -> bool: ...
    @property
    def is_draining(self) -> bool: ...
    @property
    def recv_len(self) -> int: ...
    @property
    def send_len(self) -> int: ...
    @property
    def recv_size(self) -> int: ...
    @property
    def send_size(self) -> int: ...
    def set_handler(self, handler: _Handler | None, /) -> None: ...
    def send(self, data: str | Buffer, /) -> None: ...
    def reply(
        self,
        status_code: int,
        body: str | Buffer = b"",
        headers: dict[Any, Any] | None = None,
    ) -> None: ...
    def reply_json(
        self,
        data: Any,
        status_code: int = 200,
        headers: dict[Any, Any] | None = None,
    ) -> None: ...
    def serve_dir(
        self,
        message: HttpMessage,
        root_dir: str | bytes | PathLike[str],
        extra_headers: str = "",
        mime_types: str = "",
        page404: str | bytes | PathLike[str] = "",
    ) -> None:
        """Answer ``message`` from the files under ``root_dir`` (SPEC 2.6).

        ``extra_headers``: raw ``"Name: value\\r\\n"`` lines added to every response
        (a missing final CRLF is added; anything but header lines is a ValueError).
        ``mime_types``: ``"ext=type,ext2=type2"`` (``"*=type"`` for every file) tried
        before the built-in table.  ``page404``: a file sent with status 200 when
        nothing matches.  A view past its event raises
        ``ValueError("HttpMessage is not valid for this event")``."""
    def serve_file(
        self,
        message: HttpMessage,
        path: str | bytes | PathLike[str],
        extra_headers: str = "",
        mime_types: str = "",
    ) -> None:
        """Answer ``message`` with the file at ``path``, whatever its URI."""
    def http_chunk(self, data: str | Buffer, /) -> None:
        """Send one chunk of a chunked body; ``b""`` sends the last one and ends the response."""
    def http_sse(self, event_type: str, data: str | Buffer) -> None:
        """Send ``event: <event_type>\\ndata: <data>\\n\\n`` as one chunk."""
    def http_response(
        self,
        status: int,
        headers: Any,
        body: Buffer | None = None,
        head: bool = False,
        chunked: bool = True,
    ) -> int:
        """Write a response for a WSGI/ASGI server: the status line, the ``(name, value)``
        pairs of ``headers`` (bytes or str; duplicates kept; CR, LF or NUL -> ValueError),
        then, with a ``body``: Content-Length unless given, the body (not when ``head``)
        and the response is finished; with ``body=None``: only the head of a streamed
        response (chunked framing when no length is given and ``chunked``).  Returns bit
        1 if the head announced chunked framing, bit 2 if the connection closes after."""
    def http_end(self) -> None:
        """Finish a response written with raw ``send()`` calls (SPEC Decision 5).

        The next pipelined request on this connection is then parsed, and a
        ``Connection: close`` request drains the connection.  ``reply``,
        ``reply_json``, ``serve_dir``, ``serve_file`` and ``http_chunk(b"")`` do
        this themselves."""
    def resolve(self, url: str, /) -> None:
        """Look up the host of ``url``: MG_EV_RESOLVE (``remote_addr`` set) or MG_EV_ERROR follows.

        Any connection may ask, listeners included; only a client connection not
        yet connected then connects to the address."""
    def resolve_cancel(self) -> None:
        """Forget the pending lookup of this connection: no MG_EV_RESOLVE follows."""
    def sntp_request(self) -> None:
        """Send one SNTP request now (ignored, with an error log, while the name resolves)."""
    def http_basic_auth(self, username: str | Buffer, password: str | Buffer) -> None:
        """Queue ``Authorization: Basic <base64(username[:password])>\\r\\n`` (no request line)."""
    def ws_upgrade(self, message: HttpMessage, extra_headers: dict[Any, Any] | None = None) -> None:
        """Answer a WebSocket upgrade request with 101; MG_EV_WS_OPEN fires inside the call.

        ``extra_headers`` are checked as for ``reply()``.  The first subprotocol the
        client offered is echoed unless ``extra_headers`` names one; permessage-deflate
        is negotiated when offered (unless the listener has ``ws_deflate=False``).
        A request that is no WebSocket handshake is answered with 426 (no key, no
        ``Upgrade: websocket``, or a version other than 13) or 400, and closed.

        Called from MG_EV_HTTP_MSG with its view, or later with ``message.copy()``
        while the request is unanswered (an application that checks something
        first).  ``RuntimeError`` if the request was answered already; nothing
        happens on a closing connection."""
    def ws_send(self, data: str | Buffer, op: int = 1) -> None:
        """Send one frame with FIN set: text (str as UTF-8), binary, ping, pong or close (8).

        Op 8 starts the closing handshake (payload: a 2-byte code and a reason); the
        peer's close frame then closes the connection.  ValueError for another opcode or
        a control payload over 125 bytes; RuntimeError if not a WebSocket."""
    def mqtt_pub(
        self,
        topic: str,
        message: str | Buffer,
        qos: int = 0,
        retain: bool = False,
        properties: list[dict[str, Any]] | None = None,
    ) -> int:
        """PUBLISH; returns the packet id (0 for QoS 0).  ``properties``: MQTT 5 only."""
    def mqtt_sub(
        self, topic: str, qos: int = 0, *, properties: list[dict[str, Any]] | None = None
    ) -> None: ...
    def mqtt_unsub(self, topic: str, *, properties: list[dict[str, Any]] | None = None) -> None: ...
    def mqtt_ping(self) -> None: ...
    def mqtt_pong(self) -> None: ...
    def mqtt_disconnect(self) -> None:
        """Send DISCONNECT; the connection stays open until the peer closes it."""
    def mqtt_broker_stats(self) -> dict[str, int]:
        """Counters of the MQTT broker this listener or client belongs to: clients,
        sessions, subscriptions, retained, messages_in, messages_out, dropped, connects."""
    def mqtt_broker_publish(
        self, topic: str, message: str | Buffer, qos: int = 0, retain: bool = False
    ) -> None:
        """Publish from the broker itself to its subscribers (no acl)."""
    def close(self) -> None: ...
    def drain(self) -> None: ...
    def error(self, message: str, /) -> None: ...
    def recv_data(self, length: int = -1) -> bytes: ...
    def send_data(self, length: int = -1) -> bytes: ...
    def tls_init(self, opts: TlsOpts, /) -> None:
        """Start TLS with ``opts``; a listener's options are inherited by what it accepts.

        Never raises for bad PEM or odd states: errors arrive as MG_EV_ERROR
        (a listener logs them and fails the connections it then accepts)."""
    def tls_free(self) -> None:
        """Drop the TLS state of this connection."""

@final
class TlsOpts:
    """Options of ``Connection.tls_init()``: PEM bytes (str is UTF-8 encoded, None is b"")."""

    ca: bytes
    cert: bytes
    key: bytes
    name: bytes
    skip_verification: bool
    def __new__(
        cls,
        ca: str | Buffer | None = None,
        cert: str | Buffer | None = None,
        key: str | Buffer | None = None,
        name: str | Buffer | None = None,
        skip_verification: bool = False,
    ) -> TlsOpts: ...

@final
class Timer:
    """A timer of a Manager, returned by Manager.timer_add()."""

    def cancel(self) -> None: ...
    @property
    def active(self) -> bool: ...

@disjoint_base
class Manager:
    """An event loop and its connections."""

    def __init__(
        self,
        handler: _Handler | None = None,
        enable_wakeup: bool = False,
        error_handler: Callable[[Exception], object] | None = None,
    ) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...
    def poll(self, timeout_ms: int = 0) -> None: ...
    def listen(
        self,
        url: str,
        handler: _Handler | None = None,
        *,
        http: bool | None = None,
        max_head: int | None = None,
        max_headers: int | None = None,
        max_uri: int | None = None,
        max_body: int | None = None,
        head_timeout_ms: int | None = None,
        idle_timeout_ms: int | None = None,
        max_header_line: int | None = None,
        reuse_port: bool = False,
        ws_max_message: int | None = None,
        ws_deflate: bool = True,
    ) -> Connection:
        """Listen on ``url``; returns the listener.

        The keyword-only limits apply to an HTTP listener (ValueError otherwise) and
        to every connection it accepts; ``None`` keeps the default, ``0`` disables
        the limit.  A request that passes one is answered with the status shown
        and ``Connection: close``; other connections are not disturbed.

        - ``max_head``: request line + headers, bytes -> 431 (default 64 KiB)
        - ``max_headers``: number of header lines -> 431 (default 1000)
        - ``max_uri``: request-target, bytes -> 414 (default 64 KiB)
        - ``max_body``: body, from Content-Length or de-chunked -> 413 (default 3 MiB)
        - ``head_timeout_ms``: from a request's first byte to the end of its head,
          else 408 and close (slowloris; default 30000)
        - ``idle_timeout_ms``: no request, or no progress writing, for this long ->
          close (default 60000)
        - ``max_header_line``: one header line, bytes -> 431 (default 16 KiB)

        Besides the limits: an HTTP version other than 1.x gets 505, an HTTP/1.1
        request without ``Host`` 400, and a handler that raises on MG_EV_HTTP_MSG
        before answering gets the client a 500 (SPEC Decision 14).

        For the WebSocket connections it upgrades (``ws_upgrade``):

        - ``ws_max_message``: message limit in bytes, after inflating; a bigger one
          fails the connection with close code 1009 (default 64 MiB)
        - ``ws_deflate``: ``False`` never negotiates permessage-deflate
        """
    def connect(
        self, url: str, handler: _Handler | None = None, *, http: bool | None = None
    ) -> Connection: ...
    def sntp_connect(self, url: str, handler: _Handler | None = None) -> Connection:
        """Ask the SNTP server at ``url`` for the time (``udp://host:port``;
        ``sntp://host`` is UDP port 123): MG_EV_SNTP_TIME with ms since the epoch
        (an ``int``), then the connection closes; silence for 3 s closes it."""
    def ws_connect(
        self,
        url: str,
        handler: _Handler | None = None,
        *,
        extra_headers: dict[Any, Any] | None = None,
        ws_max_message: int | None = None,
        ws_deflate: bool = True,
    ) -> Connection:
        """Open a WebSocket client connection to ``ws://host[:port]/path``.

        The handshake is queued at once (``extra_headers`` added to it, e.g.
        ``{"Sec-WebSocket-Protocol": "mqtt"}``); MG_EV_WS_OPEN (data: the 101
        response) follows, or MG_EV_ERROR("ws handshake error").  permessage-deflate
        is offered unless ``ws_deflate=False``; ``ws_max_message`` as for ``listen``."""
    def mqtt_connect(
        self,
        url: str,
        handler: _Handler | None = None,
        client_id: str = "",
        username: str = "",
        password: str = "",
        clean_session: bool = True,
        keepalive: int = 60,
        *,
        version: int = 4,
        will_topic: str | None = None,
        will_message: str | Buffer | None = None,
        will_qos: int = 0,
        will_retain: bool = False,
        properties: list[dict[str, Any]] | None = None,
        will_properties: list[dict[str, Any]] | None = None,
    ) -> Connection:
        """Connect to an MQTT broker; CONNECT is queued at once (no PINGREQ is ever sent for you).

        ``version=5`` speaks MQTT 5; ``properties`` / ``will_properties`` are lists of
        dicts as ``MqttMessage.properties()`` returns them (``id``, and ``iv``, ``val``
        or ``key`` + ``val``)."""
    def mqtt_listen(self, url: str, handler: _Handler | None = None) -> Connection:
        """Listen for MQTT clients; the handler answers them (not a broker)."""
    def mqtt_broker(
        self,
        url: str = "mqtt://0.0.0.0:1883",
        *,
        handler: _Handler | None = None,
        persist: str | bytes | PathLike[str] | PathLike[bytes] | None = None,
        auth: Callable[[str, str | None, str | None], bool] | None = None,
        acl: Callable[[str, str | None, str, bool], bool] | None = None,
        max_inflight: int = 20,
        max_queued: int = 1000,
        tls: TlsOpts | None = None,
    ) -> Connection:
        """Serve MQTT 3.1.1 and 5 clients with this Manager's one built-in broker;
        returns the listener.  ``url``: ``mqtt://``, ``mqtts://``, ``ws://host:port[/path]``
        (MQTT over WebSocket, subprotocol ``mqtt``) or ``wss://``; ``tls`` sets up TLS
        on an ``mqtts://`` or ``wss://`` listener.  Later calls add listeners to the
        same broker."""
    def wakeup(self, connection_id: int, data: bytes = b"") -> bool: ...
    def timer_add(
        self,
        milliseconds: int,
        callback: Callable[[], object],
        *,
        repeat: bool = False,
        run_now: bool = False,
    ) -> Timer: ...
    def run(self, poll_ms: int = 100) -> None: ...
    def close(self) -> None: ...
    def fileno(self) -> int:
        """The loop's epoll descriptor: readable when ``poll(0)`` has I/O to do."""
    def timeout(self, ms: int = -1) -> int:
        """How long the loop may sleep now, at most ``ms``: 0 when work is pending,
        else until the next timer; -1 for no limit."""
    def stats(self) -> dict[str, Any]:
        """Counters of the loop: ``connections_open``, ``connections_accepted``,
        ``bytes_in``, ``bytes_out``, ``http_requests``, ``http_responses`` (a dict
        ``1xx``..``5xx``, ``other``), ``errors``, ``wakeups``, ``iterations``,
        ``loop_lag_ms`` (how late the last iteration's wait ended past its
        deadline) and ``loop_lag_max_ms`` (the largest of the last 64)."""
    @property
    def connections(self) -> tuple[Connection, ...]: ...
    @property
    def wakeup_id(self) -> int: ...

def event_name(ev: int, /) -> str: ...
def log_set(level: int, /) -> None: ...
def log_get() -> int: ...

@final
class RpcReq:
    """One JSON-RPC request, handed to an Rpc handler; valid only while it runs."""

    @property
    def frame(self) -> str: ...
    def ok(self, result_json: str) -> None: ...
    def err(self, code: int, message: str) -> None: ...

@final
class Rpc:
    """A JSON-RPC 2.0 dispatcher (Mongoose mg_rpc semantics)."""

    def __init__(self) -> None: ...
    def add(self, method: str, handler: Callable[[RpcReq], object]) -> None: ...
    def process(self, frame: str | Buffer, /) -> str: ...
    @property
    def methods(self) -> list[str]: ...

def json_get(data: str | Buffer, path: str) -> str | None: ...
def json_get_num(data: str | Buffer, path: str, default: float | None = None) -> float | None: ...
def json_get_bool(data: str | Buffer, path: str, default: bool | None = None) -> bool | None: ...
def json_get_long(data: str | Buffer, path: str, default: int = 0) -> int: ...
def json_get_str(data: str | Buffer, path: str) -> str | None: ...
def url_encode(data: str, /) -> str: ...
def url_port(url: str, /) -> int: ...
def url_host(url: str, /) -> str: ...
def url_user(url: str, /) -> str: ...
def url_pass(url: str, /) -> str: ...
def url_uri(url: str, /) -> str: ...
def url_is_ssl(url: str, /) -> bool: ...
def match(s: str, pattern: str) -> tuple[bool, list[str]]: ...
def http_var(buf: str | Buffer, name: str) -> str | None: ...
def http_parse_multipart(
    body: str | Buffer, offset: int = 0
) -> tuple[int, dict[str, Any] | None]: ...
def md5(data: str | Buffer, /) -> bytes: ...
def sha1(data: str | Buffer, /) -> bytes: ...
def sha256(data: str | Buffer, /) -> bytes: ...
def hmac_sha256(key: str | Buffer, data: str | Buffer) -> bytes: ...
def base64_encode(data: str | Buffer, /) -> str: ...
def base64_decode(data: str, /) -> bytes: ...
def millis() -> int: ...
def random_bytes(length: int, /) -> bytes: ...
def random_str(length: int, /) -> str: ...
def crc32(data: str | Buffer, initial: int = 0) -> int: ...
