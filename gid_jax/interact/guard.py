"""Guards for the local HTTP server: read deadlines, a connection cap, whole bodies, strict JSON.

The page has no authentication and every connection costs a thread, so without these one local
client could hold every thread (idle or slow connections), hide a second request in a body the
server never read, or make a handler fail on numbers Python cannot convert.

* `GuardedServer`: at most ``max_connections`` connections at once (a 503 and close past that);
  a watcher thread shuts any socket whose current read overran its deadline, since a socket
  timeout only bounds each ``recv``, not a request trickled in a byte at a time.
* `GuardedHandler`: a request's line and headers must arrive within ``header_timeout`` of the
  connection opening or of the previous answer (idle keep-alive connections close too), a body
  within ``body_timeout``; `GuardedHandler.read_body` reads the whole body or refuses it, and
  any refusal before the body was read closes the connection.
* `parse_json` / `finite_number`: strict JSON (no NaN or Infinity, no huge integers, bounded
  nesting) and finite numbers, or a `BadRequest` with a one-line reason.
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["BadRequest", "GuardedHandler", "GuardedServer", "finite_number", "parse_json"]

MAX_BODY_BYTES = 64 * 1024
MAX_INT_DIGITS = 30              # longer JSON integers are refused (no float overflow later)
CONTENT_LENGTH = re.compile(r"[0-9]{1,10}")


class BadRequest(Exception):
    """A client error: answered with ``status`` and the message, never a traceback."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST, headers=None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def short(value, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters: error messages never echo a whole body."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


# -- strict JSON ---------------------------------------------------------------------------------

def _strict_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits is out of range")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {short(text)} is out of range")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes):
    """Strict JSON: every number finite (so no NaN reaches the simulation) or a `BadRequest`."""
    try:
        return json.loads(raw.decode("utf-8"), parse_int=_strict_int, parse_float=_finite_float,
                          parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise BadRequest("body is not valid JSON: not UTF-8") from None
    except RecursionError:
        raise BadRequest("body is not valid JSON: nested too deeply") from None
    except ValueError as e:            # json.JSONDecodeError and the hooks above
        raise BadRequest(f"body is not valid JSON: {e}") from None


def finite_number(body: dict, key: str) -> float:
    """``body[key]`` as a finite float, or a `BadRequest` that says why."""
    if key not in body:
        raise BadRequest(f'missing "{key}": expected {{"x", "y", "dx", "dy"}} in image pixels')
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f'"{key}" must be a finite number, got {short(value)}')
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise BadRequest(f'"{key}" must be a finite number, got {short(value)}')
    return number


# -- connections -----------------------------------------------------------------------------------

def _shutdown(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _refuse(sock) -> None:
    """A best-effort 503 for a connection over the cap; never blocks the accept loop."""
    body = b'{"error": "too many connections", "status": 503}'
    try:
        sock.setblocking(False)
        sock.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\nConnection: close\r\nRetry-After: 1\r\n\r\n%s"
                  % (len(body), body))
    except OSError:
        pass


class _Connection:
    """A live client socket: its handler thread and the time its current read must end by."""

    __slots__ = ("thread", "deadline", "expired")

    def __init__(self, deadline):
        self.thread = None
        self.deadline = deadline
        self.expired = False


class GuardedServer(ThreadingHTTPServer):
    """`ThreadingHTTPServer` with a connection cap and read deadlines (seconds, see module)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler_class, *, header_timeout: float = 10.0,
                 body_timeout: float = 10.0, max_connections: int = 32):
        if not (header_timeout > 0 and body_timeout > 0 and max_connections >= 1):
            raise ValueError("need header_timeout > 0, body_timeout > 0 and max_connections >= 1;"
                             f" got {header_timeout}, {body_timeout}, {max_connections}")
        self.header_timeout, self.body_timeout = float(header_timeout), float(body_timeout)
        self.max_connections = int(max_connections)
        self._connections: dict[socket.socket, _Connection] = {}
        self._conn_lock = threading.Lock()
        self._closing = threading.Event()
        super().__init__(address, handler_class)
        self._watcher = threading.Thread(target=self._watch_deadlines, daemon=True,
                                         name="gid-interact-deadlines")
        self._watcher.start()

    def process_request(self, request, client_address):
        """A thread per connection up to ``max_connections``; past that a 503 and close."""
        with self._conn_lock:
            full = len(self._connections) >= self.max_connections
            if not full:
                self._connections[request] = _Connection(time.monotonic() + self.header_timeout)
        if full:
            _refuse(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._forget(request)
            raise

    def shutdown_request(self, request):
        self._forget(request)           # every connection ends here, whatever its handler did
        super().shutdown_request(request)

    def open_connections(self) -> int:
        with self._conn_lock:
            return len(self._connections)

    def _attach(self, sock) -> None:
        with self._conn_lock:
            if sock in self._connections:
                self._connections[sock].thread = threading.current_thread()

    def _forget(self, sock) -> None:
        with self._conn_lock:
            self._connections.pop(sock, None)

    def set_deadline(self, sock, seconds) -> None:
        """The current read on ``sock`` must end within ``seconds`` from now (None: no limit)."""
        with self._conn_lock:
            conn = self._connections.get(sock)
            if conn is not None:
                conn.deadline = None if seconds is None else time.monotonic() + seconds

    def expired(self, sock) -> bool:
        with self._conn_lock:
            conn = self._connections.get(sock)
            return conn is None or conn.expired

    def _watch_deadlines(self) -> None:
        """Shut the sockets whose read overran its deadline; the blocked read then ends at once."""
        tick = min(0.25, self.header_timeout / 4, self.body_timeout / 4)
        while not self._closing.wait(tick):
            now = time.monotonic()
            with self._conn_lock:
                late = [sock for sock, c in self._connections.items()
                        if not c.expired and c.deadline is not None and c.deadline <= now]
                for sock in late:
                    self._connections[sock].expired = True
            for sock in late:
                _shutdown(sock)

    # Handler threads are daemons (an open browser tab keeps a keep-alive connection), so
    # server_close() closes their connections and waits for them: no thread may still be
    # inside JAX when the interpreter exits (that aborts the process).
    def server_close(self) -> None:
        self._closing.set()
        super().server_close()
        with self._conn_lock:
            connections = list(self._connections.items())
        for sock, _ in connections:
            _shutdown(sock)
        deadline = time.monotonic() + 10.0
        for _, conn in connections:
            if conn.thread is not None and conn.thread is not threading.current_thread():
                conn.thread.join(max(0.0, deadline - time.monotonic()))


class GuardedHandler(BaseHTTPRequestHandler):
    """Reads requests under the server's deadlines; `read_body` takes whole bodies only."""

    server: GuardedServer
    protocol_version = "HTTP/1.1"  # keep-alive: the page's frame requests reuse one connection
    body_pending = False           # the request declared a body not read (yet)

    def setup(self):
        # every socket operation (sends included) is bounded; whole reads by the deadlines
        self.timeout = max(self.server.header_timeout, self.server.body_timeout)
        super().setup()
        self.server._attach(self.request)

    def handle_one_request(self):
        self.server.set_deadline(self.request, self.server.header_timeout)
        try:
            super().handle_one_request()
        except OSError:   # the client went away, or a deadline shut its socket
            self.close_connection = True

    def parse_request(self):
        ok = super().parse_request()
        if self.server.expired(self.request):   # headers cut short by the deadline: ignore them
            self.close_connection = True
            return False
        self.server.set_deadline(self.request, None)   # rendering an answer takes what it takes
        self.body_pending = "Content-Length" in self.headers or "Transfer-Encoding" in self.headers
        return ok

    def refuse_unread_body(self) -> None:
        """Call before answering an error: a body left unread must never be parsed as the next
        request (request smuggling), so such a connection is closed after the answer."""
        if self.body_pending:
            self.close_connection = True

    def read_body(self) -> bytes:
        """The whole body (one ``Content-Length``, at most `MAX_BODY_BYTES`), under the body
        deadline; b"" when a GET has none. Anything else is a `BadRequest`."""
        if "Transfer-Encoding" in self.headers:
            raise BadRequest("chunked request bodies are not accepted: send Content-Length",
                             HTTPStatus.LENGTH_REQUIRED)
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            if self.command == "POST":
                raise BadRequest("missing Content-Length", HTTPStatus.LENGTH_REQUIRED)
            return b""
        if len(lengths) > 1 or not CONTENT_LENGTH.fullmatch(lengths[0].strip()):
            raise BadRequest(f"bad Content-Length {short(', '.join(lengths))}")
        length = int(lengths[0])
        if length > MAX_BODY_BYTES:
            raise BadRequest(f"body of {length} bytes is too large (at most {MAX_BODY_BYTES})",
                             HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        self.server.set_deadline(self.request, self.server.body_timeout)
        raw = self.rfile.read(length) if length else b""
        self.server.set_deadline(self.request, None)
        if len(raw) < length:
            raise BadRequest(f"body ended after {len(raw)} of {length} bytes")
        self.body_pending = False
        return raw
