"""Interactive dynamics (docs/method.md §7.3): the session's physics against `simulate_modal` and the
closed-form damped oscillator, the local HTTP server, and the page driven in headless Chromium."""

import contextlib
import http.client
import json
import math
import socket
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from data_pipelines.synth import generate_video
from gid_jax.interact import (InteractiveSession, render_drag_response, serve,
                              write_drag_response)
from gid_jax.interact.browser import HeadlessChromium, find_chromium, wait_for_telemetry
from gid_jax.motion import mode_angular_frequencies, simulate_modal, to_spectral_volume

W, H = 64, 48


@pytest.fixture(scope="module")
def scene():
    """A procedural clip's first frame and the spectral volume of its exact trajectories."""
    video = generate_video(3, size=(W, H), num_frames=150)
    sv = np.asarray(to_spectral_volume(video.trajectories), np.float32)
    amp = np.sqrt((sv[1:] ** 2).sum(-1)).mean(0)
    y, x = np.unravel_index(np.argmax(amp), amp.shape)   # the liveliest pixel
    return video.frames[0].astype(np.float32), sv, (int(x), int(y))


def single_mode_volume(k, shape=(4, 8, 8), coeff=(3.0 + 1.0j, -0.5 + 2.0j)):
    """Spectral volume whose only non-zero band is ``k`` (same complex 2-vector everywhere)."""
    sv = np.zeros(shape + (4,), np.float32)
    sv[k, ..., 0], sv[k, ..., 1] = coeff[0].real, coeff[1].real
    sv[k, ..., 2], sv[k, ..., 3] = coeff[0].imag, coeff[1].imag
    return sv


# -- physics -------------------------------------------------------------------------------

def test_release_puts_the_dragged_pixel_at_the_drag(scene):
    image, sv, (x, y) = scene
    session = InteractiveSession(image, sv)
    drag = np.array([5.0, -2.5])
    session.drag((x, y), drag)
    disp = session.displacement()
    along = disp[y, x] @ (drag / np.linalg.norm(drag))
    assert along == pytest.approx(np.linalg.norm(drag), rel=1e-4)
    assert session.frame_index == 0 and session.motion() > 1.0


def test_frame_by_frame_steps_match_simulate_modal(scene):
    image, sv, (x, y) = scene
    ref = np.asarray(simulate_modal(sv, (x, y), (4.0, 3.0), 45))
    session = InteractiveSession(image, sv)
    session.drag((x, y), (4.0, 3.0))
    got = []
    for chunk in (1, 1, 3, 1, 5, 1, 2):             # single steps and multi-frame steps mixed
        for _ in range(chunk):
            got.append(session.displacement())
            session.step(1)
        session.step(0)
    for _ in range(45 - len(got)):
        got.append(session.displacement())
        session.step()
    np.testing.assert_allclose(np.stack(got), ref, atol=1e-4 * np.abs(ref).max())
    session.drag((x, y), (4.0, 3.0))
    session.step(30)
    np.testing.assert_allclose(session.displacement(), ref[30], atol=1e-4 * np.abs(ref).max())


def analytic_response(q0, omega, gamma, t):
    """Released at rest: q(t) = q0 e^{-γt/2} (cos ω_d t + γ/(2ω_d) sin ω_d t)."""
    wd = np.sqrt(omega**2 - gamma**2 / 4)
    return q0 * np.exp(-gamma * t / 2) * (np.cos(wd * t) + gamma / (2 * wd) * np.sin(wd * t))


@pytest.mark.parametrize("k", [1, 2])
def test_single_mode_is_the_closed_form_damped_oscillator(k):
    sv = single_mode_volume(k)
    session = InteractiveSession(np.zeros((8, 8, 3), np.float32), sv, fps=30.0, period=150)
    drag = np.array([2.0, 1.0])
    session.drag((3, 4), drag)
    q0 = session.modal_state()[0][k]
    omega = mode_angular_frequencies(4, 30.0, 150)[k]
    gamma = 0.4 + 0.08 * omega**2
    t = np.arange(150) / 30.0
    s = sv[k, 4, 3, :2] + 1j * sv[k, 4, 3, 2:]
    expected = np.real(s[None, :] * analytic_response(q0, omega, gamma, t)[:, None])   # (T, 2)
    got = []
    for _ in t:
        got.append(session.displacement()[4, 3])
        session.step()
    got = np.stack(got)
    # semi-implicit Euler runs about half a step ahead of the closed form: |error| ≲ ω·dt/2 of
    # the amplitude (ω·dt = 0.04, 0.08 here)
    np.testing.assert_allclose(got, expected, atol=0.7 * omega / 30.0 * np.abs(expected).max())
    assert np.abs(got[-30:]).max() < 0.5 * np.abs(got[:30]).max()     # and it has decayed


def test_stronger_damping_decays_faster(scene):
    image, sv, (x, y) = scene

    def motion_after(alpha, beta, seconds=2.0):
        session = InteractiveSession(image, sv, alpha=alpha, beta=beta)
        session.drag((x, y), (4.0, -4.0))
        start = session.motion()
        session.step(int(seconds * session.fps))
        return session.motion() / start

    base = motion_after(0.4, 0.08)
    assert 0.0 < base < 1.0
    assert motion_after(1.6, 0.08) < 0.5 * base
    assert motion_after(0.4, 0.12) < 0.8 * base
    assert motion_after(0.05, 0.005) > base
    # the slowest mode (k=1) sets the tail: after 10 s the bound is near e^{-γ_1 t / 2}
    omega1 = mode_angular_frequencies(16)[1]
    assert motion_after(0.4, 0.08, 10.0) < 2.0 * np.exp(-(0.4 + 0.08 * omega1**2) * 10.0 / 2)


def test_default_render_and_plugged_renderer(scene):
    image, sv, (x, y) = scene
    session = InteractiveSession(image, sv)
    np.testing.assert_allclose(session.frame(), image, atol=1e-5)   # at rest: the still
    session.drag((x, y), (6.0, 0.0))
    moved = session.frame()
    assert moved.shape == image.shape and 0.0 <= moved.min() and moved.max() <= 1.0
    assert np.abs(moved - image).max() > 0.05

    seen = []

    def render_fn(img, disp):
        seen.append(np.array(disp))
        return np.clip(img + 0.01 * disp[..., :1], 0, 1)

    plugged = InteractiveSession(image, sv, render_fn=render_fn)
    plugged.drag((x, y), (6.0, 0.0))
    plugged.step(2)
    frame = plugged.frame()
    np.testing.assert_allclose(seen[-1], plugged.displacement(), atol=1e-6)
    np.testing.assert_allclose(frame, np.clip(image + 0.01 * seen[-1][..., :1], 0, 1), atol=1e-6)


def test_bad_input_is_refused_with_a_clear_message(scene):
    image, sv, _ = scene
    with pytest.raises(ValueError, match="differ in size"):
        InteractiveSession(image[:-2], sv)
    with pytest.raises(ValueError, match=r"\(K, H, W, 4\)"):
        InteractiveSession(image, sv[..., :2])
    session = InteractiveSession(image, sv)
    with pytest.raises(ValueError, match="outside"):
        session.drag((W + 5, 2), (1, 1))
    with pytest.raises(ValueError, match="finite"):
        session.drag((2, 2), (float("nan"), 1))
    with pytest.raises(ValueError, match="longer than"):            # would overflow the modes
        session.drag((2, 2), (1e308, 1e308))
    assert session.max_drag == 4 * W and session.last_drag is None
    # stiff damping (δt·γ_k >= 2 for a mode) is integrated with sub-steps, not NaN frames
    stiff = InteractiveSession(image, sv, beta=0.3)
    assert stiff.substeps > 1
    stiff.drag((2, 2), (3.0, 1.0))
    stiff.step(30)
    assert np.all(np.isfinite(stiff.displacement())) and stiff.motion() < 3.0


def test_a_drag_never_leaves_a_non_finite_state(scene, monkeypatch):
    image, sv, (x, y) = scene
    session = InteractiveSession(image, sv)
    import gid_jax.interact.session as session_module
    monkeypatch.setattr(session_module, "initial_modal_state",
                        lambda *a: np.full(sv.shape[0], np.nan, np.complex64))
    with pytest.raises(ValueError, match="non-finite"):
        session.drag((x, y), (3.0, 1.0))
    assert session.motion() == 0.0 and np.isfinite(session.frame()).all()


def test_headless_drag_response_and_mp4(scene, tmp_path):
    image, sv, (x, y) = scene
    session = InteractiveSession(image, sv)
    frames = render_drag_response(session, (x, y), (5.0, 2.0), 40)
    assert frames.shape == (40, H, W, 3) and frames.dtype == np.float32
    diffs = np.abs(frames - image).mean(axis=(1, 2, 3))
    assert diffs[0] > 0.0 and len({round(float(d), 6) for d in diffs}) > 30
    assert diffs[-10:].mean() < diffs[:10].mean()                    # the motion dies down
    assert session.motion() == 0.0                                   # left at rest
    path = write_drag_response(tmp_path / "response.mp4", session, (x, y), (5.0, 2.0), 20)
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 20


# -- server --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(scene):
    image, sv, _ = scene
    srv, url = serve(InteractiveSession(image, sv))
    yield srv, url
    srv.shutdown()
    srv.server_close()


def fetch(url, data=None, headers=None, method=None):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def post_json(url, obj):
    return fetch(url, json.dumps(obj).encode(), {"Content-Type": "application/json"})


def decode_sprite(body, headers):
    img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    n, stride = int(headers["X-Num-Frames"]), int(headers["X-Frame-Stride"])
    assert img.shape == (n * stride, W, 3)
    return img.reshape(n, stride, W, 3)[:, :H]


def test_server_serves_page_still_and_state(server, scene):
    srv, url = server
    assert url.startswith("http://127.0.0.1:")
    status, headers, body = fetch(url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"<canvas" in body and b"/app.js" in body
    status, headers, body = fetch(url + "app.js")
    assert status == 200 and b"/frames?n=" in body and b"/drag" in body
    status, headers, body = fetch(url + "image.png")
    still = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    np.testing.assert_allclose(still / 255.0, scene[0], atol=0.5 / 255 + 1e-6)
    status, _, body = fetch(url + "state")
    state = json.loads(body)
    assert status == 200 and (state["width"], state["height"]) == (W, H) and state["fps"] == 30.0


def test_server_drag_then_frames_change_and_decay(server, scene):
    srv, url = server
    _, _, (x, y) = scene
    assert post_json(url + "reset", {})[0] == 200
    status, _, body = post_json(url + "drag", {"x": x, "y": y, "dx": 5, "dy": -3})
    assert status == 200 and json.loads(body)["motion"] > 1.0
    status, headers, body = fetch(url + "frames?n=4")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert int(headers["X-Frame-Index"]) == 0
    first = decode_sprite(body, headers).astype(np.float32)
    assert len({f.tobytes() for f in first.astype(np.uint8)}) == 4         # every frame differs
    assert np.abs(first[0] - scene[0] * 255).max() > 20                    # moved from the still
    status, headers, body = fetch(url + "frames?n=3&format=png")
    assert int(headers["X-Frame-Index"]) == 4
    # lossless frames are the session's own frames, index for index
    ref = InteractiveSession(*scene[:2])
    ref.drag((x, y), (5, -3))
    ref.step(4)
    np.testing.assert_allclose(decode_sprite(body, headers), ref.next_frames(3) * 255, atol=0.51)
    motion = float(headers["X-Motion"])
    fetch(url + "frames?n=30")
    assert float(fetch(url + "frames?n=1")[1]["X-Motion"]) < motion
    status, _, body = post_json(url + "reset", {})
    assert json.loads(body)["motion"] == 0.0 and json.loads(body)["frame_index"] == 0


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not valid JSON"),
    (b'{"x": 1, "y": 2, "dx": 3}', 'missing "dy"'),
    (b'{"x": 1, "y": 2, "dx": "far", "dy": 1}', '"dx" must be a finite number'),
    (b'[1, 2, 3, 4]', "JSON object"),
    (b'{"x": 1000, "y": 2, "dx": 1, "dy": 1}', "outside"),
])
def test_server_bad_drag_is_400_with_reason(server, body, message):
    _, url = server
    status, headers, raw = fetch(url + "drag", body, {"Content-Type": "application/json"})
    assert status == 400 and headers["Content-Type"] == "application/json"
    assert message in json.loads(raw)["error"]


def test_server_other_errors(server):
    srv, url = server
    assert fetch(url + "frames?n=0")[0] == 400
    assert b"integer" in fetch(url + "frames?n=abc")[2]
    assert fetch(url + f"frames?n={srv.max_frames + 1}")[0] == 400
    assert fetch(url + "frames?format=gif")[0] == 400
    status, _, body = fetch(url + "nowhere", headers={"Accept": "text/html"})
    assert status == 404 and b"<h1>404" in body and b"/nowhere" in body
    status, headers, _ = fetch(url + "drag")
    assert status == 405 and headers["Allow"] == "POST"
    assert fetch(url + "state", b"{}", method="POST")[0] == 405
    assert fetch(url + "frames?n=1", method="HEAD")[0] == 405      # HEAD must not step
    assert fetch(url + "image.png", method="HEAD")[0] == 200
    # another Host (DNS rebinding) or a cross-site POST is refused
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_port, timeout=10)
    conn.request("GET", "/state", headers={"Host": "evil.example:80"})
    assert conn.getresponse().status == 403
    conn.close()
    assert fetch(url + "reset", b"{}", {"Origin": "http://evil.example"})[0] == 403
    with pytest.raises(ValueError, match="127.0.0.1 only"):
        serve(srv.session, host="0.0.0.0", warmup=False)


# -- hardening: timeouts, caps, whole bodies, strict numbers, same-origin state changes -----

@contextlib.contextmanager
def limited_server(scene, **limits):
    """A fresh server with small limits (short timeouts keep these tests to seconds)."""
    srv, url = serve(InteractiveSession(*scene[:2]), warmup=False, **limits)
    try:
        yield srv, url
    finally:
        srv.shutdown()
        srv.server_close()


def connect(srv, timeout=5.0):
    return socket.create_connection(("127.0.0.1", srv.server_port), timeout=timeout)


def read_until_closed(sock, limit_s=5.0) -> tuple[bytes, bool]:
    """What the server sends until it closes the connection: (bytes, closed within limit_s)."""
    sock.settimeout(limit_s)
    chunks = []
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
    except ConnectionResetError:
        return b"".join(chunks), True
    except socket.timeout:
        return b"".join(chunks), False


def wait_until(condition, limit_s=5.0):
    deadline = time.monotonic() + limit_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def request_bytes(srv, method, path, body=b"", headers=()):
    host = f"127.0.0.1:{srv.server_port}"
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_idle_slow_and_stalled_connections_are_closed(scene):
    with limited_server(scene, header_timeout=0.5, body_timeout=0.5) as (srv, url):
        # idle: connects and sends nothing (held for 20 s and more before)
        t0 = time.monotonic()
        with connect(srv) as s:
            data, closed = read_until_closed(s, 5.0)
        assert closed and data == b"" and time.monotonic() - t0 < 3.0
        # slow loris: headers trickle in, each byte well inside a socket timeout
        t0 = time.monotonic()
        with connect(srv) as s:
            s.sendall(request_bytes(srv, "GET", "/state")[:-2])   # headers not finished
            closed = False
            for _ in range(40):                                    # at most 4 s
                try:
                    s.sendall(b"X")
                except OSError:
                    closed = True
                    break
                data, closed = read_until_closed(s, 0.1)
                if closed:
                    break
        assert closed and b"200 OK" not in data and time.monotonic() - t0 < 3.0
        # a body that stops half-way
        with connect(srv) as s:
            s.sendall(request_bytes(srv, "POST", "/drag", b'{"x": 1, ',
                                    ["Content-Length: 40", "Content-Type: application/json"]))
            data, closed = read_until_closed(s, 5.0)
        assert closed and b"200 OK" not in data and srv.session.last_drag is None
        # the server still answers, and no handler thread was left behind
        assert fetch(url + "state")[0] == 200
        assert wait_until(lambda: srv.open_connections() == 0)


def test_connections_and_threads_are_capped(scene):
    with limited_server(scene, max_connections=4, header_timeout=5.0) as (srv, url):
        threads_before = threading.active_count()
        held = [connect(srv) for _ in range(4)]
        try:
            assert wait_until(lambda: srv.open_connections() == 4)
            for _ in range(8):                  # over the cap: answered 503 and closed at once
                with connect(srv) as s:
                    data, closed = read_until_closed(s, 3.0)
                assert closed and (data == b"" or data.startswith(b"HTTP/1.1 503"))
            assert srv.open_connections() == 4
            assert threading.active_count() <= threads_before + 4
        finally:
            for s in held:
                s.close()
        assert wait_until(lambda: srv.open_connections() == 0)
        assert fetch(url + "state")[0] == 200


def test_telemetry_is_bounded_in_bytes(scene):
    with limited_server(scene, max_telemetry_bytes=4096) as (srv, url):
        for i in range(30):                     # 30 posts of ~1 KB each
            record = {"kind": "test", "i": i, "pad": "x" * 1000}
            assert post_json(url + "telemetry", [record])[0] == 204
        records = srv.telemetry_records()
        assert srv.telemetry_bytes <= 4096
        assert sum(len(json.dumps(r)) for r in records) <= 4096
        assert 1 <= len(records) < 30 and records[-1]["i"] == 29     # the newest are kept


def test_a_body_is_read_whole_or_the_connection_closed(scene):
    """A request hidden in a body must never run (it did after a /reset with a body > 64 KB)."""
    with limited_server(scene) as (srv, url):
        drag = json.dumps({"x": 3, "y": 3, "dx": 4, "dy": 1}).encode()
        hidden = request_bytes(srv, "POST", "/drag", drag, [f"Content-Length: {len(drag)}"])
        for headers, status in [
            (["Content-Length: 70000"], b" 413 "),                   # over the limit: unread
            (["Content-Length: 5", "Content-Length: 400"], b" 400 "),  # ambiguous length
            (["Transfer-Encoding: chunked"], b" 411 "),              # no chunked bodies
            (["Content-Length: 1x"], b" 400 "),
        ]:
            with connect(srv) as s:
                s.sendall(request_bytes(srv, "POST", "/reset", hidden, headers))
                data, closed = read_until_closed(s, 5.0)
            assert closed, headers
            assert data.count(b"HTTP/1.1") == 1 and status in data.split(b"\r\n")[0], (headers, data)
            assert srv.session.last_drag is None, f"hidden /drag ran after {headers}"
        # a body within the limit is read and ignored: the next request on the connection is
        # the real one, not the body
        with connect(srv) as s:
            s.sendall(request_bytes(srv, "POST", "/reset", hidden, [f"Content-Length: {len(hidden)}"])
                      + request_bytes(srv, "GET", "/state", b"", ["Connection: close"]))
            data, closed = read_until_closed(s, 5.0)
        assert closed and data.count(b"HTTP/1.1 200 OK") == 2
        assert srv.session.last_drag is None


def strict_json(raw: bytes):
    def refuse(name):
        raise ValueError(f"{name} in JSON")
    return json.loads(raw, parse_constant=refuse)


@pytest.mark.parametrize("body, message", [
    (b'{"x": 1' + b"0" * 400 + b', "y": 2, "dx": 1, "dy": 1}', "out of range"),   # x = 10**400
    (b'{"x": 10, "y": 10, "dx": 1e400, "dy": 1}', "out of range"),
    (b'{"x": 10, "y": 10, "dx": NaN, "dy": 1}', "NaN"),
    (b'{"x": 10, "y": 10, "dx": -Infinity, "dy": 1}', "Infinity"),
    (b'{"x": 10, "y": 10, "dx": 1e308, "dy": 1e308}', "longer than"),
    (b"[" * 60000, "nested too deeply"),
    (b'{"x": 10, "y": 10, "dx": 1, "dy": "\xff"}', "UTF-8"),
])
def test_bad_numbers_and_json_are_400_and_state_stays_valid(server, body, message):
    srv, url = server
    post_json(url + "reset", {})
    status, headers, raw = fetch(url + "drag", body, {"Content-Type": "application/json"})
    assert status == 400 and message in strict_json(raw)["error"]
    assert b"Traceback" not in raw and b"Error:" not in raw
    state = strict_json(fetch(url + "state")[2])      # never a bare NaN
    assert state["last_drag"] is None and math.isfinite(state["motion"])
    status, headers, _ = fetch(url + "frames?n=2")
    assert status == 200 and float(headers["X-Motion"]) == 0.0


def test_internal_errors_do_not_leak_their_text(server, monkeypatch, capsys):
    srv, url = server

    def broken(point, drag):
        raise RuntimeError("secret internals at /home/user")

    monkeypatch.setattr(srv.session, "drag", broken)
    status, _, raw = post_json(url + "drag", {"x": 1, "y": 1, "dx": 1, "dy": 1})
    assert status == 500 and b"secret" not in raw and "internal" in json.loads(raw)["error"]
    assert "secret internals" in capsys.readouterr().err        # the log has it


def test_state_changes_only_from_the_page_origin(server, scene):
    srv, url = server
    _, _, (x, y) = scene
    own = url.rstrip("/")
    assert post_json(url + "drag", {"x": x, "y": y, "dx": 4, "dy": 1})[0] == 200
    index = srv.session.frame_index
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):
        assert fetch(url + "frames?n=3", headers=headers)[0] == 403, headers   # no stepping
        assert fetch(url + "reset", b"{}", {**headers, "Content-Type": "application/json"})[0] == 403
        assert srv.session.frame_index == index and srv.session.last_drag is not None
        assert fetch(url + "state", headers=headers)[0] == 200     # reading is harmless
    status, headers, _ = fetch(url + "frames?n=3", headers={"Origin": own,
                                                            "Sec-Fetch-Site": "same-origin"})
    assert status == 200 and srv.session.frame_index == index + 3
    assert fetch(url + "frames?n=1", headers={"Sec-Fetch-Site": "none"})[0] == 200   # typed URL
    post_json(url + "reset", {})


# -- the page in a real browser ------------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    find_chromium() is None, reason="headless browser test needs Chromium: apt-get install -y chromium")


def run_page(scene, query, until, timeout=60.0):
    """Serve a fresh session of ``scene``, show ``url + query`` in headless Chromium until
    ``until(telemetry)`` holds; returns (session, telemetry, Chromium's output)."""
    image, sv, _ = scene
    session = InteractiveSession(image, sv)
    srv, url = serve(session)
    try:
        with HeadlessChromium(url + query) as browser:
            wait_for_telemetry(srv, until, timeout, browser)
        records = srv.telemetry_records()
    finally:
        srv.shutdown()
        srv.server_close()
    errors = [r for r in records if r.get("kind") == "error"]
    assert not errors, f"page reported errors: {errors}"
    assert any(r.get("kind") == "ready" for r in records), (
        f"page never loaded; telemetry {records[:5]}; chromium said:\n{browser.output}")
    return session, records, browser.output


@needs_chromium
def test_page_scripted_drag_animates_the_canvas_in_headless_chromium(scene):
    """``?autodrag=`` fires pointer events through the page's own handlers; the page then plays
    frames from /frames and reports a checksum of its canvas after every frame to /telemetry."""
    _, _, (x, y) = scene

    def enough(records):
        return len({r["checksum"] for r in records if r.get("kind") == "frame"}) >= 8

    session, records, _ = run_page(scene, f"?autodrag={x},{y},6,-3", enough)
    drags = [r for r in records if r.get("kind") == "drag"]
    assert drags and (drags[0]["x"], drags[0]["y"]) == pytest.approx((x, y), abs=0.01)
    assert (drags[0]["dx"], drags[0]["dy"]) == pytest.approx((6, -3), abs=0.01)
    assert session.last_drag is not None
    stills = {r["checksum"] for r in records if r.get("kind") == "still"}
    checksums = [r["checksum"] for r in records if r.get("kind") == "frame"]
    assert len(set(checksums)) >= 8, f"canvas did not keep changing: {checksums}"
    assert not stills & set(checksums[:4]), "the first frames after release look like the still"


@needs_chromium
def test_page_shows_a_positive_frame_rate_after_a_drag_in_headless_chromium(scene):
    """The corner label (#fps) shows frames displayed per second, about once a second."""
    _, _, (x, y) = scene

    def measured(records):
        return any(r.get("kind") == "fps" for r in records)

    _, records, _ = run_page(scene, f"?autodrag={x},{y},6,-3&telemetry=fps", measured)
    fps = [r for r in records if r.get("kind") == "fps"]
    assert fps, f"no frame rate was shown; telemetry {records[-5:]}"
    label = fps[0]["label"]
    assert label.endswith(" fps"), label
    value = float(label.split()[0])
    assert math.isfinite(value) and 0.0 < value <= 1.25 * 30.0   # the page plays at 30 fps
    assert value == pytest.approx(fps[0]["fps"], abs=0.051) and fps[0]["ms"] >= 1000
    assert fps[0]["renderer"] == "splat preview"
