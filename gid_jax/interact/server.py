"""Local web server for interactive dynamics: drag a point of the image, see the scene respond.

Python's stdlib `http.server` (a `ThreadingHTTPServer`), bound to 127.0.0.1 only; no extra
dependencies. One `InteractiveSession` is shared by every request (one user, one scene).

Endpoints (all coordinates in image pixels, x right, y down):

=========================  ======================================================================
``GET  /``                 the page (``static/index.html`` + ``static/app.js``, plain JS)
``GET  /image.png``        the still image
``GET  /state``            JSON: ``width, height, fps, frame_index, motion, rest_threshold, ...``
``POST /drag``             JSON ``{"x", "y", "dx", "dy"}``: drag ``(x, y)`` by ``(dx, dy)``, release
``GET  /frames?n=K``       the next K frames (1 <= K <= ``max_frames``) as ONE image: the frames
                           stacked top to bottom, each padded to ``X-Frame-Stride`` rows (a multiple
                           of 16, so JPEG blocks never straddle two frames). ``format=jpeg``
                           (default) or ``png``. Headers: ``X-Num-Frames``, ``X-Frame-Index`` (of
                           the first frame), ``X-Frame-Stride``, ``X-Motion`` (pixels of motion left
                           after these frames; the page stops when it drops below
                           ``rest_threshold``), ``X-Render-Ms`` (server time per frame)
``POST /reset``            back to rest
``POST /telemetry``        JSON object from the page (canvas checksums, fps, errors); kept in
                           ``server.telemetry`` (tests and debugging read it)
=========================  ======================================================================

Frames are delivered in batches because one HTTP round trip per frame costs about as much as
rendering it; the page keeps a few frames queued and plays them at ``fps`` with
requestAnimationFrame. Bad requests get a 4xx answer with a one-line reason (JSON
``{"error": ...}``, or a small HTML page when a browser asks for HTML). Requests whose ``Host``
header is not this server's loopback address, and POSTs from another ``Origin``, are refused with
403 (guards against DNS rebinding and cross-site requests from other pages open in the browser).
"""

from __future__ import annotations

import atexit
import collections
import html
import json
import math
import socket
import sys
import threading
import time
import webbrowser
import weakref
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from gid_jax.interact.session import InteractiveSession

__all__ = ["InteractServer", "serve", "run_forever", "encode_frames"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
MAX_BODY_BYTES = 64 * 1024
MAX_SPRITE_ROWS = 16384          # keep one response image well inside decoder limits
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
}


class BadRequest(Exception):
    """A client error: answered with ``status`` and the message, never a traceback."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST, headers=None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def frame_stride(height: int) -> int:
    """Rows per frame in a sprite: ``height`` rounded up to a multiple of 16 (JPEG MCU)."""
    return -(-height // 16) * 16


def encode_frames(frames: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> tuple[bytes, int]:
    """``(n,H,W,3)`` floats in [0, 1] → (one JPEG/PNG of the frames stacked, row stride)."""
    frames = np.asarray(frames)
    n, h, w, _ = frames.shape
    stride = frame_stride(h)
    sprite = np.zeros((n, stride, w, 3), np.uint8)
    sprite[:, :h] = (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if stride > h:  # repeat the last row into the padding: no dark seam bleeding into the frame
        sprite[:, h:] = sprite[:, h - 1:h]
    bgr = sprite.reshape(n * stride, w, 3)[..., ::-1]
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"could not encode {n} frames of {w}x{h} as {fmt}")
    return buf.tobytes(), stride


class InteractServer(ThreadingHTTPServer):
    """The HTTP server; ``session``, ``telemetry`` and settings live here for the handlers."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, session: InteractiveSession, *, rest_threshold: float = 0.1,
                 max_frames: int = 30, jpeg_quality: int = 90, verbose: bool = False):
        self.session = session
        self.rest_threshold = float(rest_threshold)
        self.max_frames = max(1, min(int(max_frames), MAX_SPRITE_ROWS // frame_stride(session.height)))
        self.jpeg_quality = int(jpeg_quality)
        self.verbose = verbose
        self.telemetry: collections.deque = collections.deque(maxlen=10000)
        self.telemetry_event = threading.Condition()
        ok, png = cv2.imencode(".png", (np.clip(session.image, 0, 1) * 255 + 0.5)
                               .astype(np.uint8)[..., ::-1])
        self.image_png = png.tobytes()
        self._static_cache: dict[str, bytes] = {}
        self._connections: dict = {}
        self._conn_lock = threading.Lock()
        super().__init__(address, _Handler)
        self.allowed_hosts = {f"{h}:{self.server_port}" for h in LOOPBACK_HOSTS}
        self.allowed_origins = {f"http://{h}" for h in self.allowed_hosts}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/"

    def static(self, name: str) -> bytes:
        if name not in self._static_cache:
            self._static_cache[name] = (STATIC_DIR / name).read_bytes()
        return self._static_cache[name]

    def state(self) -> dict:
        s = self.session
        return {
            "width": s.width, "height": s.height, "fps": s.fps, "num_freqs": s.num_freqs,
            "alpha": s.alpha, "beta": s.beta, "frame_index": s.frame_index,
            "motion": s.motion(), "rest_threshold": self.rest_threshold,
            "max_frames": self.max_frames, "last_drag": s.last_drag,
        }

    # Handler threads are daemons (an open browser tab keeps a keep-alive connection forever),
    # so server_close() closes their connections and waits for them: no thread may still be
    # inside JAX when the interpreter exits (that aborts the process).
    def _register(self, sock, thread) -> None:
        with self._conn_lock:
            self._connections[sock] = thread

    def _unregister(self, sock) -> None:
        with self._conn_lock:
            self._connections.pop(sock, None)

    def server_close(self) -> None:
        super().server_close()
        with self._conn_lock:
            connections = list(self._connections.items())
        for sock, _ in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + 10.0
        for _, thread in connections:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def add_telemetry(self, record) -> None:
        with self.telemetry_event:
            self.telemetry.append(record)
            self.telemetry_event.notify_all()


class _Handler(BaseHTTPRequestHandler):
    server: InteractServer
    server_version = "gid-interact/1.0"
    protocol_version = "HTTP/1.1"  # keep-alive: the page's frame requests reuse one connection
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms stalls

    # -- plumbing ----------------------------------------------------------------------------

    def setup(self):
        super().setup()
        self.server._register(self.request, threading.current_thread())

    def finish(self):
        try:
            super().finish()
        finally:
            self.server._unregister(self.request)

    def log_message(self, format, *args):  # noqa: A002 (stdlib signature)
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status, body: bytes, content_type: str, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status=HTTPStatus.OK):
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _error(self, status: HTTPStatus, message: str, headers=None):
        if "text/html" in self.headers.get("Accept", "") and self.command in ("GET", "HEAD"):
            title = f"{status.value} {status.phrase}"
            body = (f"<!doctype html><meta charset=utf-8><title>{title}</title>"
                    f"<h1>{title}</h1><p>{html.escape(message)}</p>"
                    f"<p><a href=\"/\">back to the scene</a></p>").encode()
            self._send(status, body, "text/html; charset=utf-8", headers)
        else:
            body = json.dumps({"error": message, "status": status.value}).encode()
            self._send(status, body, "application/json", headers)

    def _check_origin(self, post: bool):
        host = self.headers.get("Host", "")
        if host not in self.server.allowed_hosts:
            raise BadRequest(f"Host {host!r} not served here: open {self.server.url}",
                             HTTPStatus.FORBIDDEN)
        origin = self.headers.get("Origin")
        if post and origin is not None and origin not in self.server.allowed_origins:
            raise BadRequest(f"requests from origin {origin!r} are not accepted",
                             HTTPStatus.FORBIDDEN)

    def _body_json(self):
        length = self.headers.get("Content-Length")
        if length is None:
            raise BadRequest("missing Content-Length", HTTPStatus.LENGTH_REQUIRED)
        try:
            length = int(length)
        except ValueError:
            raise BadRequest(f"bad Content-Length {length!r}") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise BadRequest(f"body of {length} bytes is too large (at most {MAX_BODY_BYTES})",
                             HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        raw = self.rfile.read(length)
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadRequest(f"body is not valid JSON: {e}") from None

    def _dispatch(self, routes: dict):
        try:
            self._check_origin(post=self.command == "POST")
            parts = urlsplit(self.path)
            handler = routes.get(parts.path)
            if handler is None:
                if parts.path in _ALL_GET or parts.path in _POST_ROUTES:
                    allow = ("POST" if parts.path in _POST_ROUTES
                             else "GET" if parts.path == "/frames" else "GET, HEAD")
                    raise BadRequest(f"{self.command} is not allowed on {parts.path} (use {allow})",
                                     HTTPStatus.METHOD_NOT_ALLOWED, {"Allow": allow})
                raise BadRequest(f"no such page: {parts.path}", HTTPStatus.NOT_FOUND)
            handler(self, parse_qs(parts.query, keep_blank_values=True))
        except BadRequest as e:
            if self.command == "POST":
                self.close_connection = True  # the body may not have been read
            self._error(e.status, str(e), e.headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - report, keep serving
            print(f"gid interact: error serving {self.command} {self.path}: "
                  f"{type(e).__name__}: {e}", file=sys.stderr)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(e).__name__}: {e}")

    def do_GET(self):
        self._dispatch(_ALL_GET)

    def do_HEAD(self):
        self._dispatch(_HEAD_ROUTES)  # not /frames: a HEAD must not advance the simulation

    def do_POST(self):
        self._dispatch(_POST_ROUTES)

    def do_PUT(self):
        self._dispatch({})

    do_DELETE = do_PATCH = do_PUT

    # -- endpoints ---------------------------------------------------------------------------

    def _static(self, query):
        name, ctype = STATIC_FILES[urlsplit(self.path).path]
        self._send(HTTPStatus.OK, self.server.static(name), ctype)

    def _favicon(self, query):
        self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")

    def _image(self, query):
        self._send(HTTPStatus.OK, self.server.image_png, "image/png")

    def _state(self, query):
        self._json(self.server.state())

    def _frames(self, query):
        srv = self.server
        n_raw = query.get("n", ["1"])[-1]
        try:
            n = int(n_raw)
        except ValueError:
            raise BadRequest(f"n must be an integer number of frames, got {n_raw!r}") from None
        if not 1 <= n <= srv.max_frames:
            raise BadRequest(f"n must be between 1 and {srv.max_frames}, got {n}")
        fmt = query.get("format", ["jpeg"])[-1].lower()
        if fmt not in ("jpeg", "jpg", "png"):
            raise BadRequest(f"format must be jpeg or png, got {fmt!r}")
        session = srv.session
        with session._lock:  # the frames, their index and the motion after them belong together
            first = session.frame_index
            t0 = time.perf_counter()
            frames = session.next_frames(n)
            render_ms = (time.perf_counter() - t0) * 1000.0 / n
            motion = session.motion()
        body, stride = encode_frames(frames, "png" if fmt == "png" else "jpeg", srv.jpeg_quality)
        self._send(HTTPStatus.OK, body, "image/png" if fmt == "png" else "image/jpeg", {
            "X-Num-Frames": n, "X-Frame-Index": first, "X-Frame-Stride": stride,
            "X-Frame-Width": session.width, "X-Frame-Height": session.height,
            "X-Motion": f"{motion:.6g}", "X-Render-Ms": f"{render_ms:.3f}",
        })

    def _drag(self, query):
        body = self._body_json()
        if not isinstance(body, dict):
            raise BadRequest('body must be a JSON object {"x":…, "y":…, "dx":…, "dy":…}')
        values = {}
        for key in ("x", "y", "dx", "dy"):
            if key not in body:
                raise BadRequest(f'missing "{key}": expected {{"x", "y", "dx", "dy"}} in image pixels')
            v = body[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise BadRequest(f'"{key}" must be a finite number, got {v!r}')
            values[key] = float(v)
        try:
            self.server.session.drag((values["x"], values["y"]), (values["dx"], values["dy"]))
        except ValueError as e:
            raise BadRequest(str(e)) from None
        self._json(self.server.state())

    def _reset(self, query):
        length = int(self.headers.get("Content-Length", "0") or 0)
        if 0 < length <= MAX_BODY_BYTES:
            self.rfile.read(length)
        self.server.session.reset()
        self._json(self.server.state())

    def _telemetry(self, query):
        body = self._body_json()
        records = body if isinstance(body, list) else [body]
        if not all(isinstance(r, dict) for r in records):
            raise BadRequest("telemetry must be a JSON object or a list of objects")
        for r in records:
            self.server.add_telemetry(r)
        self._send(HTTPStatus.NO_CONTENT, b"", "text/plain")


_GET_ROUTES = {
    "/image.png": _Handler._image,
    "/state": _Handler._state,
    "/frames": _Handler._frames,
    "/favicon.ico": _Handler._favicon,
}
_POST_ROUTES = {
    "/drag": _Handler._drag,
    "/reset": _Handler._reset,
    "/telemetry": _Handler._telemetry,
}
_ALL_GET = {**{path: _Handler._static for path in STATIC_FILES}, **_GET_ROUTES}
_HEAD_ROUTES = {path: h for path, h in _ALL_GET.items() if path != "/frames"}


_LIVE_SERVERS: "weakref.WeakSet[InteractServer]" = weakref.WeakSet()


@atexit.register
def _close_live_servers() -> None:
    """A script that exits without closing its server must not abort in a handler thread."""
    for server in list(_LIVE_SERVERS):
        try:
            server.shutdown()
            server.server_close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def serve(session: InteractiveSession, host: str = "127.0.0.1", port: int = 0,
          open_browser: bool = False, *, warmup: bool = True, **settings):
    """Start serving ``session`` in a background thread; returns ``(server, url)``.

    Only loopback is served: ``host`` must be ``127.0.0.1`` (or ``localhost``). ``port=0`` picks
    a free port. ``settings`` go to `InteractServer` (``rest_threshold`` in pixels, ``max_frames``
    per request, ``jpeg_quality``, ``verbose``). Stop with ``server.shutdown();
    server.server_close()``. ``warmup`` compiles the render path before the first request.
    """
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"gid interact serves on 127.0.0.1 only (got host {host!r}): "
                         "the page has no authentication")
    if warmup:
        session.warmup()
    try:
        server = InteractServer(("127.0.0.1", int(port)), session, **settings)
    except OSError as e:
        raise OSError(f"cannot listen on 127.0.0.1:{port}: {e.strerror or e}") from None
    thread = threading.Thread(target=server.serve_forever, name="gid-interact-server",
                              daemon=True)
    thread.start()
    _LIVE_SERVERS.add(server)
    server.thread = thread
    url = server.url
    if open_browser:
        webbrowser.open(url)
    return server, url


def run_forever(session: InteractiveSession, host: str = "127.0.0.1", port: int = 0,
                open_browser: bool = False, **settings) -> None:
    """`serve` and block until Ctrl-C, then shut the server down cleanly."""
    server, url = serve(session, host, port, open_browser, **settings)
    print(f"gid interact: serving {session.width}x{session.height} scene at {url} "
          "(drag a point of the image and release; Ctrl-C to stop)", flush=True)
    try:
        while server.thread.is_alive():
            server.thread.join(0.5)
    except KeyboardInterrupt:
        print("gid interact: stopping", file=sys.stderr)
    finally:
        server.shutdown()
        server.server_close()
