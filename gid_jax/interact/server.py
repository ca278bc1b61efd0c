"""Local web server for interactive dynamics: drag a point of the image, see the scene respond.

Python's stdlib `http.server` (a `ThreadingHTTPServer`), bound to 127.0.0.1 only; no extra
dependencies. One `InteractiveSession` is shared by every request (one user, one scene).

Endpoints (all coordinates in image pixels, x right, y down):

=========================  ======================================================================
``GET  /``                 the page (``static/index.html`` + ``static/app.js``, plain JS)
``GET  /image.png``        the still image
``GET  /state``            JSON: ``width, height, fps, frame_index, motion, rest_threshold,
                           renderer`` ("learned renderer" or "splat preview"), ``max_drag, ...``
``POST /drag``             JSON ``{"x", "y", "dx", "dy"}``: drag ``(x, y)`` by ``(dx, dy)``, release
``GET  /frames?n=K``       the next K frames (1 <= K <= ``max_frames``) as ONE image: the frames
                           stacked top to bottom, each padded to ``X-Frame-Stride`` rows (a multiple
                           of 16, so JPEG blocks never straddle two frames). ``format=jpeg``
                           (default) or ``png``. Headers: ``X-Num-Frames``, ``X-Frame-Index`` (of
                           the first frame), ``X-Frame-Stride``, ``X-Motion`` (pixels of motion left
                           after these frames; the page stops when it drops below
                           ``rest_threshold``), ``X-Render-Ms`` (server time per frame)
``POST /reset``            back to rest
``POST /telemetry``        JSON object from the page (canvas checksums, fps, errors), or a list of
                           them; kept in ``server.telemetry`` (tests, benchmarks and debugging)
=========================  ======================================================================

Frames are delivered in batches because one HTTP round trip per frame costs about as much as
rendering it; the page keeps a few frames queued and plays them at ``fps`` with
requestAnimationFrame. Bad requests get a 4xx answer with a one-line reason (JSON
``{"error": ...}``, or a small HTML page when a browser asks for HTML).

The page has no authentication, so the server trusts only its own page and bounds what any
client can hold:

* ``Host`` must be this server's loopback address (against DNS rebinding), else 403;
* requests that change anything (every POST, and ``GET /frames``, which advances the simulation)
  are refused with 403 when the browser says another page sent them: an ``Origin`` other than
  this server's, or a ``Sec-Fetch-Site`` other than ``same-origin`` / ``none``;
* `gid_jax.interact.guard`: line and headers within ``header_timeout`` seconds (idle
  keep-alive connections close too), a body within ``body_timeout``, ``max_connections`` at
  once (503 past that), bodies of one ``Content-Length`` up to 64 KiB read in full or the
  connection closed, strict JSON with finite numbers (else 400);
* an internal error answers 500 without its details (they go to stderr); ``/telemetry`` keeps
  at most ``max_telemetry_bytes`` (and 10,000 records), dropping the oldest.
"""

from __future__ import annotations

import atexit
import collections
import html
import json
import math
import re
import sys
import threading
import time
import webbrowser
import weakref
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from gid_jax.interact.guard import (BadRequest, GuardedHandler, GuardedServer, finite_number,
                                    parse_json, short)
from gid_jax.interact.session import InteractiveSession

__all__ = ["InteractServer", "serve", "run_forever", "encode_frames"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
MAX_SPRITE_ROWS = 16384          # keep one response image well inside decoder limits
MAX_TELEMETRY_RECORDS = 10000
SAME_SITE_FETCHES = ("same-origin", "none")   # Sec-Fetch-Site of the page itself / a typed URL
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
}


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


class InteractServer(GuardedServer):
    """The HTTP server; ``session``, ``telemetry``, settings and limits live here.

    Limits (seconds, counts, bytes): ``header_timeout`` for a request's line and headers (counted
    from the connection's start or the previous answer, so it also closes idle connections),
    ``body_timeout`` for its body, ``max_connections`` served at once (one thread each), and
    ``max_telemetry_bytes`` of telemetry kept.
    """

    def __init__(self, address, session: InteractiveSession, *, rest_threshold: float = 0.1,
                 max_frames: int = 30, jpeg_quality: int = 90, verbose: bool = False,
                 header_timeout: float = 10.0, body_timeout: float = 10.0,
                 max_connections: int = 32, max_telemetry_bytes: int = 1 << 20):
        if not max_telemetry_bytes >= 0:
            raise ValueError(f"need max_telemetry_bytes >= 0, got {max_telemetry_bytes}")
        self.session = session
        self.rest_threshold = float(rest_threshold)
        self.max_frames = max(1, min(int(max_frames), MAX_SPRITE_ROWS // frame_stride(session.height)))
        self.jpeg_quality = int(jpeg_quality)
        self.verbose = verbose
        self.max_telemetry_bytes = int(max_telemetry_bytes)
        self.telemetry: collections.deque = collections.deque()
        self.telemetry_bytes = 0
        self._telemetry_sizes: collections.deque = collections.deque()
        self.telemetry_event = threading.Condition()
        ok, png = cv2.imencode(".png", (np.clip(session.image, 0, 1) * 255 + 0.5)
                               .astype(np.uint8)[..., ::-1])
        self.image_png = png.tobytes()
        self._static_cache: dict[str, bytes] = {}
        super().__init__(address, _Handler, header_timeout=header_timeout,
                         body_timeout=body_timeout, max_connections=max_connections)
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
        motion = s.motion()
        return {
            "width": s.width, "height": s.height, "fps": s.fps, "num_freqs": s.num_freqs,
            "alpha": s.alpha, "beta": s.beta, "frame_index": s.frame_index,
            "motion": motion if math.isfinite(motion) else None,
            "rest_threshold": self.rest_threshold, "max_frames": self.max_frames,
            "last_drag": s.last_drag, "renderer": s.renderer_name, "max_drag": s.max_drag,
        }

    # -- telemetry, bounded in bytes -----------------------------------------------------------

    def add_telemetry(self, record, size: int | None = None) -> None:
        """Keep ``record`` (``size``: its JSON bytes); the oldest go past the byte/count caps."""
        size = len(json.dumps(record)) if size is None else int(size)
        with self.telemetry_event:
            self.telemetry.append(record)
            self._telemetry_sizes.append(size)
            self.telemetry_bytes += size
            while self.telemetry and (self.telemetry_bytes > self.max_telemetry_bytes
                                      or len(self.telemetry) > MAX_TELEMETRY_RECORDS):
                self.telemetry.popleft()
                self.telemetry_bytes -= self._telemetry_sizes.popleft()
            self.telemetry_event.notify_all()

    def telemetry_records(self) -> list:
        """A copy of the telemetry kept so far (safe while the page keeps posting)."""
        with self.telemetry_event:
            return list(self.telemetry)


class _Handler(GuardedHandler):
    server: InteractServer
    server_version = "gid-interact/1.0"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms stalls

    # -- plumbing ----------------------------------------------------------------------------

    def log_message(self, format, *args):  # noqa: A002 (stdlib signature)
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status, body: bytes, content_type: str, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if self.close_connection:
            self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status=HTTPStatus.OK):
        self._send(status, json.dumps(obj, allow_nan=False).encode(), "application/json")

    def _error(self, status: HTTPStatus, message: str, headers=None):
        self.refuse_unread_body()
        if "text/html" in self.headers.get("Accept", "") and self.command in ("GET", "HEAD"):
            title = f"{status.value} {status.phrase}"
            body = (f"<!doctype html><meta charset=utf-8><title>{title}</title>"
                    f"<h1>{title}</h1><p>{html.escape(message)}</p>"
                    f"<p><a href=\"/\">back to the scene</a></p>").encode()
            self._send(status, body, "text/html; charset=utf-8", headers)
        else:
            body = json.dumps({"error": message, "status": status.value}).encode()
            self._send(status, body, "application/json", headers)

    def _check_origin(self, changes_state: bool):
        hosts = self.headers.get_all("Host") or []
        if len(hosts) != 1 or hosts[0] not in self.server.allowed_hosts:
            raise BadRequest(f"Host {short(', '.join(hosts), 80)} not served here: open "
                             f"{self.server.url}", HTTPStatus.FORBIDDEN)
        if not changes_state:
            return
        for origin in self.headers.get_all("Origin") or []:
            if origin not in self.server.allowed_origins:
                raise BadRequest(f"requests from origin {short(origin, 80)} are not accepted",
                                 HTTPStatus.FORBIDDEN)
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and site not in SAME_SITE_FETCHES:
            raise BadRequest(f"{short(site)} requests are not accepted: use the page at "
                             f"{self.server.url}", HTTPStatus.FORBIDDEN)

    def _dispatch(self, routes: dict):
        path = urlsplit(self.path).path
        try:
            self._check_origin(self.command not in ("GET", "HEAD") or path == "/frames")
            self.body = self.read_body()
            handler = routes.get(path)
            if handler is None:
                if path in _ALL_GET or path in _POST_ROUTES:
                    allow = ("POST" if path in _POST_ROUTES
                             else "GET" if path == "/frames" else "GET, HEAD")
                    raise BadRequest(f"{self.command} is not allowed on {path} (use {allow})",
                                     HTTPStatus.METHOD_NOT_ALLOWED, {"Allow": allow})
                raise BadRequest(f"no such page: {short(path, 200)}", HTTPStatus.NOT_FOUND)
            handler(self, parse_qs(urlsplit(self.path).query, keep_blank_values=True))
        except BadRequest as e:
            self._error(e.status, str(e), e.headers)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - log it, answer without internals, keep serving
            print(f"gid interact: error serving {self.command} {short(path, 200)}: "
                  f"{type(e).__name__}: {e}", file=sys.stderr)
            self.close_connection = True
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR,
                        "internal server error (details in the server's log)")

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
        if not re.fullmatch(r"[0-9]{1,6}", n_raw.strip()):
            raise BadRequest(f"n must be an integer number of frames, got {short(n_raw)}")
        n = int(n_raw)
        if not 1 <= n <= srv.max_frames:
            raise BadRequest(f"n must be between 1 and {srv.max_frames}, got {n}")
        fmt = query.get("format", ["jpeg"])[-1].lower()
        if fmt not in ("jpeg", "jpg", "png"):
            raise BadRequest(f"format must be jpeg or png, got {short(fmt)}")
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
        body = parse_json(self.body)
        if not isinstance(body, dict):
            raise BadRequest('body must be a JSON object {"x":…, "y":…, "dx":…, "dy":…}')
        x, y, dx, dy = (finite_number(body, key) for key in ("x", "y", "dx", "dy"))
        try:
            self.server.session.drag((x, y), (dx, dy))
        except ValueError as e:
            raise BadRequest(str(e)) from None
        self._json(self.server.state())

    def _reset(self, query):
        self.server.session.reset()   # the body (if any) was read and is ignored
        self._json(self.server.state())

    def _telemetry(self, query):
        body = parse_json(self.body)
        records = body if isinstance(body, list) else [body]
        if not all(isinstance(r, dict) for r in records):
            raise BadRequest("telemetry must be a JSON object or a list of objects")
        share = len(self.body) // max(1, len(records)) + 1   # the body's bytes, split evenly
        for r in records:
            self.server.add_telemetry(r, share)
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
    per request, ``jpeg_quality``, ``verbose``, and the limits ``header_timeout``,
    ``body_timeout``, ``max_connections``, ``max_telemetry_bytes``). Stop with ``server.shutdown();
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
