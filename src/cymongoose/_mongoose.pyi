"""Type stubs for cymongoose._mongoose, the C extension (kept in step with ext/)."""

from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, final

from typing_extensions import Buffer, Self

Handler = Callable[[Connection, int, Any], object]

__all__: list[str]

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
    """A view of an HTTP message; valid only while its event handler runs."""

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
    def __bool__(self) -> bool: ...

@final
class Connection:
    """A connection of a Manager; created only by the Manager."""

    @property
    def handler(self) -> Handler | None: ...
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
    def set_handler(self, handler: Handler | None, /) -> None: ...
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
    def close(self) -> None: ...
    def drain(self) -> None: ...
    def error(self, message: str, /) -> None: ...
    def recv_data(self, length: int = -1) -> bytes: ...
    def send_data(self, length: int = -1) -> bytes: ...

@final
class Timer:
    """A timer of a Manager, returned by Manager.timer_add()."""

    def cancel(self) -> None: ...
    @property
    def active(self) -> bool: ...

class Manager:
    """An event loop and its connections."""

    def __init__(
        self,
        handler: Handler | None = None,
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
        self, url: str, handler: Handler | None = None, *, http: bool | None = None
    ) -> Connection: ...
    def connect(
        self, url: str, handler: Handler | None = None, *, http: bool | None = None
    ) -> Connection: ...
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
    @property
    def connections(self) -> tuple[Connection, ...]: ...
    @property
    def wakeup_id(self) -> int: ...

def event_name(ev: int, /) -> str: ...
def log_set(level: int, /) -> None: ...
def log_get() -> int: ...
