"""The command line: serve a directory, a WSGI app, an ASGI app or an MQTT broker.

    python -m cymongoose static [DIR] --listen http://0.0.0.0:8000
    python -m cymongoose wsgi myapp:app --workers 4 --threads 8
    python -m cymongoose asgi myapp:app --listen http://127.0.0.1:9000
    python -m cymongoose mqtt-broker --listen mqtt://0.0.0.0:1883 --listen ws://0.0.0.0:8080

Run ``python -m cymongoose --help`` (or ``cymongoose --help``) for every option.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import importlib
import ipaddress
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from . import __version__
from ._mongoose import MG_EV_HTTP_MSG, Connection, Manager

log = logging.getLogger("cymongoose")
access = logging.getLogger("cymongoose.access")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_LISTEN = 0, 1, 2, 3
_STATS_PERIOD = 10.0  # s between counter lines at --log-level debug

_EPILOG = """\
examples:
  python -m cymongoose static ./public --listen http://0.0.0.0:8000
  python -m cymongoose wsgi app:app                  # Flask, Django (wsgi.py) ...
  python -m cymongoose asgi main:app --workers 4     # Starlette, FastAPI ...
  python -m cymongoose mqtt-broker --listen mqtt://0.0.0.0:1883 --listen ws://0.0.0.0:8080
  python -m cymongoose mqtt-broker --listen mqtts://0.0.0.0:8883 --tls-cert c.pem --tls-key k.pem

MODULE:APP is imported from the current directory, like uvicorn and gunicorn do:
"app:app" is the object `app` in app.py; "pkg.web:make_app()" calls a factory.
Send SIGUSR1 to print the server's counters; SIGTERM or Ctrl-C stops it gracefully
(the requests in progress finish, then the ASGI lifespan shutdown runs).

exit codes: 0 stopped cleanly, 1 failed while serving, 2 bad arguments (module, app,
URL), 3 cannot listen (address in use, not allowed).
"""


class CliError(Exception):
    """A one-line error for the user, and the exit code that goes with it."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


# ---- arguments -----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("common options")
    g.add_argument(
        "--listen",
        metavar="URL",
        action="append",
        help="address to serve on, repeatable (default http://127.0.0.1:8000; "
        "https://... with --tls-cert/--tls-key)",
    )
    g.add_argument(
        "--workers", type=int, default=1, metavar="N", help="processes sharing the port (default 1)"
    )
    g.add_argument(
        "--threads",
        type=int,
        default=8,
        metavar="N",
        help="WSGI: threads running the app (default 8)",
    )
    g.add_argument("--tls-cert", metavar="FILE", help="PEM certificate (chain) to serve TLS with")
    g.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    g.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="what to log on stderr (default info; debug adds the counters every 10 s)",
    )
    g.add_argument("--access-log", action="store_true", help="log one line per request")
    g.add_argument(
        "--root-path", default="", metavar="PATH", help="WSGI SCRIPT_NAME / ASGI root_path prefix"
    )
    g.add_argument(
        "--graceful-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="on SIGTERM, how long requests in progress may take to finish (default 10)",
    )

    parser = argparse.ArgumentParser(
        prog="python -m cymongoose",
        description="Serve static files, a WSGI or ASGI application, or an MQTT broker "
        "with cymongoose's C event loop.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cymongoose {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("static", parents=[common], help="serve the files of a directory")
    p.add_argument(
        "directory", nargs="?", default=".", metavar="DIR", help="directory to serve (default .)"
    )
    p = sub.add_parser(
        "wsgi", parents=[common], help="serve a WSGI application (Flask, Django, ...)"
    )
    p.add_argument("app", metavar="MODULE:APP", help="where the application is, e.g. app:app")
    p = sub.add_parser(
        "asgi", parents=[common], help="serve an ASGI application (Starlette, FastAPI, ...)"
    )
    p.add_argument("app", metavar="MODULE:APP", help="where the application is, e.g. main:app")
    p = sub.add_parser(
        "mqtt-broker",
        parents=[common],
        help="run an MQTT broker (mqtt://, mqtts://, ws:// and wss:// listeners)",
    )
    p.add_argument("--persist", metavar="FILE", help="keep retained messages and sessions in FILE")
    return parser


def _check_url(url: str, schemes: tuple[str, ...]) -> tuple[str, int]:
    """Host and port of a listen URL, or CliError (bad URL: exit 2)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CliError(f"bad URL {url!r}: {exc}") from None
    if parts.scheme.lower() not in schemes:
        raise CliError(
            f"bad URL {url!r}: the scheme must be one of {', '.join(s + '://' for s in schemes)}"
        )
    host = parts.hostname or ""
    if host in ("", "localhost"):
        host = "127.0.0.1" if host == "localhost" else "0.0.0.0"
    else:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise CliError(
                f"bad URL {url!r}: the host must be an IP address or localhost"
            ) from None
    if port is None:
        raise CliError(
            f"bad URL {url!r}: a port is needed, "
            f"e.g. {parts.scheme}://{parts.hostname or '0.0.0.0'}:8000"
        )
    return host, port


def _probe(host: str, port: int, reuse_port: bool) -> int:
    """Bind host:port as the server will, to report a busy port in plain words; returns
    the port (the one the OS chose for port 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            if exc.errno == errno.EADDRINUSE:
                why = "address already in use (another server runs there?)"
            raise CliError(f"cannot listen on {host}:{port}: {why}", EXIT_LISTEN) from None
        return int(s.getsockname()[1])


def _listen_urls(args: argparse.Namespace, schemes: tuple[str, ...], default: str) -> list[str]:
    """The --listen URLs, checked; port 0 replaced by a port the OS picks (so that every
    worker shares one)."""
    urls = []
    for url in args.listen or [default]:
        host, port = _check_url(url, schemes)
        got = _probe(host, port, args.workers > 1)
        if port == 0:
            parts = urlsplit(url)
            url = parts._replace(netloc=parts.netloc.rsplit(":", 1)[0] + f":{got}").geturl()
        urls.append(url)
    return urls


def _load_app(spec: str) -> Any:
    """Import MODULE:APP from the current directory (CliError with a one-line reason)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(f"bad application {spec!r}: write MODULE:APP, e.g. app:app")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise CliError(
                f"cannot import module {module_name!r}: no such module in {os.getcwd()}"
            ) from None
        raise CliError(f"cannot import module {module_name!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the module itself failed
        raise CliError(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    call = attr.endswith("()")
    obj: Any = module
    try:
        for name in attr.removesuffix("()").split("."):
            obj = getattr(obj, name)
    except AttributeError:
        raise CliError(
            f"module {module_name!r} has no attribute {attr.removesuffix('()')!r}"
        ) from None
    if call:
        obj = obj()
    if not callable(obj):
        raise CliError(f"{spec!r} is not callable: not a WSGI/ASGI application")
    return obj


def _tls_opts(args: argparse.Namespace) -> Any:
    if not args.tls_cert and not args.tls_key:
        return None
    if not (args.tls_cert and args.tls_key):
        raise CliError("--tls-cert and --tls-key go together")
    try:
        from ._mongoose import TlsOpts
    except ImportError:
        raise CliError("TLS is not available in this build of cymongoose") from None
    try:
        with open(args.tls_cert, "rb") as f:
            cert = f.read()
        with open(args.tls_key, "rb") as f:
            key = f.read()
    except OSError as exc:
        raise CliError(f"cannot read {exc.filename}: {exc.strerror}") from None
    return TlsOpts(cert=cert, key=key)


def _reuse(args: argparse.Namespace) -> dict[str, Any]:
    """listen() options: SO_REUSEPORT when worker processes share the port."""
    return {"reuse_port": True} if args.workers > 1 else {}


def _listen(
    manager_listen: Callable[..., Connection], url: str, args: argparse.Namespace, tls: Any
) -> Connection:
    try:
        listener = manager_listen(url, **_reuse(args))
    except RuntimeError as exc:
        raise CliError(f"cannot listen on {url}: {exc}", EXIT_LISTEN) from None
    if tls is not None:
        listener.tls_init(tls)
    log.info("listening on %s (pid %d)", url, os.getpid())
    return listener


# ---- the counters ----------------------------------------------------------------------


def _log_stats(manager: Manager | None, level: int = logging.WARNING) -> None:
    if manager is None:
        return
    try:
        stats = manager.stats()
    except RuntimeError:
        return
    resp = stats.pop("http_responses")
    text = " ".join(f"{k}={v}" for k, v in stats.items())
    text += " responses=" + ",".join(f"{k}:{v}" for k, v in resp.items() if v)
    log.log(level, "stats pid %d: %s", os.getpid(), text)


# ---- one process -----------------------------------------------------------------------


def _serve_loop(manager: Manager, stop_hook: Callable[[], None] | None = None) -> None:
    """Poll until SIGINT/SIGTERM; SIGUSR1 prints the counters."""
    stopping = False

    def on_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGUSR1, lambda s, f: _log_stats(manager))
    next_stats = time.monotonic() + _STATS_PERIOD
    while not stopping:
        manager.poll(100)
        if log.isEnabledFor(logging.DEBUG) and time.monotonic() >= next_stats:
            next_stats = time.monotonic() + _STATS_PERIOD
            _log_stats(manager, logging.DEBUG)


def _run_static(args: argparse.Namespace, urls: list[str], tls: Any) -> int:
    root = os.path.abspath(args.directory)
    if not os.path.isdir(root):
        raise CliError(f"no such directory: {args.directory}")
    log_requests = args.access_log

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            if log_requests:
                access.info('%s "%s %s"', (conn.remote_addr or ("?",))[0], data.method, data.uri)
            conn.serve_dir(data, root)

    manager = Manager(handler)
    try:
        for url in urls:
            _listen(manager.listen, url, args, tls)
        log.info("serving %s", root)
        _serve_loop(manager)
    finally:
        manager.close()
    return EXIT_OK


def _run_wsgi(args: argparse.Namespace, app: Any, urls: list[str], tls: Any) -> int:
    from .wsgi import WSGIServer

    server = WSGIServer(
        app,
        workers=args.threads,
        root_path=args.root_path,
        multiprocess=args.workers > 1,
        access_log=access.info if args.access_log else None,
    )
    try:
        for url in urls:
            _listen(server.listen, url, args, tls)
        _serve_loop(server.manager)
        log.info("stopping: finishing the requests in progress")
        if not server.drain(args.graceful_timeout):
            log.warning("requests still running after %gs: closing", args.graceful_timeout)
    finally:
        server.close()
    return EXIT_OK


def _run_asgi(args: argparse.Namespace, app: Any, urls: list[str], tls: Any) -> int:
    from .asgi import ASGIServer, run

    async def main() -> int:
        server = ASGIServer(
            app, root_path=args.root_path, access_log=access.info if args.access_log else None
        )
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, lambda: _log_stats(server.manager))
        try:
            try:
                listener = await server.start(urls[0], **_reuse(args))
            except RuntimeError as exc:
                if "lifespan" in str(exc):
                    raise CliError(str(exc), EXIT_ERROR) from None
                raise CliError(f"cannot listen on {urls[0]}: {exc}", EXIT_LISTEN) from None
            if tls is not None:
                listener.tls_init(tls)
            log.info("listening on %s (pid %d)", urls[0], os.getpid())
            for url in urls[1:]:
                _listen(server.listen, url, args, tls)
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), _STATS_PERIOD)
                if log.isEnabledFor(logging.DEBUG):
                    _log_stats(server.manager, logging.DEBUG)
            log.info("stopping: finishing the requests in progress")
            if not await server.drain(args.graceful_timeout):
                log.warning("requests still running after %gs: closing", args.graceful_timeout)
        finally:
            await server.stop()
        return EXIT_OK

    return int(run(main()))


_TLS_SCHEMES = ("mqtts", "wss")


def _broker_tls(urls: list[str], tls: Any) -> None:
    """mqtts:// and wss:// listeners need --tls-cert/--tls-key; plain ones ignore them (so
    mqtt://:1883 and mqtts://:8883 run side by side), but not every one of them."""
    secure = [u for u in urls if urlsplit(u).scheme.lower() in _TLS_SCHEMES]
    if secure and tls is None:
        raise CliError(f"{secure[0]} serves TLS: give --tls-cert and --tls-key")
    if tls is not None and not secure:
        raise CliError("--tls-cert/--tls-key need an mqtts:// or wss:// --listen URL")


def _run_broker(args: argparse.Namespace, urls: list[str], tls: Any) -> int:
    if not hasattr(Manager, "mqtt_broker"):
        raise CliError("the MQTT broker is not available in this build of cymongoose")
    manager = Manager()
    try:
        broker: Connection | None = None
        for url in urls:
            kw: dict[str, Any] = {}
            if urlsplit(url).scheme.lower() in _TLS_SCHEMES:
                kw["tls"] = tls
            try:
                if broker is None:
                    broker = manager.mqtt_broker(url, persist=args.persist, **kw)
                else:
                    manager.mqtt_broker(url, **kw)
            except RuntimeError as exc:
                raise CliError(f"cannot listen on {url}: {exc}", EXIT_LISTEN) from None
            log.info("MQTT broker listening on %s (pid %d)", url, os.getpid())
        _serve_loop(manager)
        if broker is not None and hasattr(broker, "mqtt_broker_stats"):
            log.info("broker: %s", broker.mqtt_broker_stats())
    finally:
        manager.close()
    return EXIT_OK


# ---- main --------------------------------------------------------------------------------


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _prepare(args: argparse.Namespace) -> Callable[[], int]:
    """Check everything the user gave (exit 2/3 before any worker starts); returns the
    function that serves in one process."""
    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    if args.threads < 1:
        raise CliError("--threads must be at least 1")
    tls = _tls_opts(args)
    if args.command == "mqtt-broker":
        if not hasattr(Manager, "mqtt_broker"):
            raise CliError("the MQTT broker is not available in this build of cymongoose")
        urls = _listen_urls(args, ("mqtt", "mqtts", "ws", "wss"), "mqtt://127.0.0.1:1883")
        _broker_tls(urls, tls)
        return lambda: _run_broker(args, urls, tls)
    http_schemes = ("http", "https") if args.command != "asgi" else ("http", "https", "ws", "wss")
    if args.command == "static":
        urls = _listen_urls(args, http_schemes, "http://127.0.0.1:8000")
        return lambda: _run_static(args, urls, tls)
    app = _load_app(args.app)
    urls = _listen_urls(args, http_schemes, "http://127.0.0.1:8000")
    if args.command == "wsgi":
        return lambda: _run_wsgi(args, app, urls, tls)
    return lambda: _run_asgi(args, app, urls, tls)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m cymongoose`` and the ``cymongoose`` script."""
    args = _parser().parse_args(argv)
    _setup_logging(args.log_level)

    def guarded(work: Callable[[], int]) -> int:
        try:
            return work()
        except CliError as exc:
            print(f"cymongoose: error: {exc}", file=sys.stderr)
            return exc.code

    try:
        work = _prepare(args)
    except CliError as exc:
        print(f"cymongoose: error: {exc}", file=sys.stderr)
        return exc.code
    if args.workers == 1:
        return guarded(work)
    from ._cli_workers import supervise

    return supervise(lambda: guarded(work), args.workers, args.graceful_timeout)


if __name__ == "__main__":
    sys.exit(main())
