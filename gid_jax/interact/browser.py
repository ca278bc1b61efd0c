"""Open pages in headless Chromium, for tests and benchmarks.

No WebDriver and no extra packages: the interactive page itself reports what it draws
(``?autodrag=`` runs a scripted drag and posts canvas checksums, frame rates and errors to
``/telemetry``), so the caller reads the results from `InteractServer.telemetry_records` while
Chromium runs. A static page (the `gid eval --report` page) gets a checking script injected as
it is served, which leaves its findings in the DOM for ``--dump-dom`` (`check_page_media`).
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["HeadlessChromium", "check_page_media", "dump_dom", "find_chromium", "wait_for_telemetry"]

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# no sandbox (containers, root), no GPU, nothing fetched but the page: quiet, offline, headless
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--mute-audio")


def find_chromium() -> str | None:
    """Path of a Chromium (or Chrome) on PATH, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class HeadlessChromium:
    """``with HeadlessChromium(url) as browser:`` shows ``url`` until the block ends.

    Its own process group (so the renderer and GPU processes go too), a throw-away profile, and
    its output in a file (a pipe nobody reads could fill up and stall it); ``output`` holds the
    output's last 3000 characters once the block has ended.
    """

    def __init__(self, url: str, executable: str | None = None, window_size=(900, 700)):
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise FileNotFoundError("no Chromium on PATH: apt-get install -y chromium")
        self.url, self.window_size = url, window_size
        self.proc = None
        self.output = ""

    def __enter__(self) -> "HeadlessChromium":
        self._profile = tempfile.mkdtemp(prefix="gid-interact-chromium-")
        self._log = open(os.path.join(self._profile, "chromium.log"), "w+b")
        w, h = self.window_size
        cmd = [self.executable, *FLAGS, f"--window-size={w},{h}", f"--user-data-dir={self._profile}",
               self.url]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __exit__(self, *exc) -> None:
        try:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if self.proc.poll() is None:
                    try:
                        os.killpg(self.proc.pid, sig)
                    except ProcessLookupError:
                        pass
                try:
                    self.proc.wait(timeout=15)
                    break
                except subprocess.TimeoutExpired:
                    continue
            self._log.seek(0)
            self.output = self._log.read().decode(errors="replace")[-3000:]
        finally:
            self._log.close()
            shutil.rmtree(self._profile, ignore_errors=True)


def wait_for_telemetry(server, until, timeout: float, browser: HeadlessChromium | None = None):
    """Telemetry records once ``until(records)`` holds, ``timeout`` seconds pass, or the browser
    exits, whichever comes first; a page error ends the wait too."""
    deadline = time.monotonic() + timeout
    while True:
        records = server.telemetry_records()
        if (until(records) or any(r.get("kind") == "error" for r in records)
                or time.monotonic() >= deadline or (browser is not None and not browser.alive())):
            return records
        with server.telemetry_event:
            server.telemetry_event.wait(min(0.5, max(0.01, deadline - time.monotonic())))


def _kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def dump_dom(url: str, *, executable: str | None = None, budget_ms: int = 15_000,
             timeout: float = 90.0, window_size=(1200, 900)) -> str:
    """The DOM of ``url`` once it has loaded and ``budget_ms`` of virtual time have passed
    (Chromium's ``--dump-dom``; virtual time stands still while a fetch is pending, so slow
    loads are waited for). A script on the page can leave its findings in the DOM."""
    executable = executable or find_chromium()
    if executable is None:
        raise FileNotFoundError("no Chromium on PATH: apt-get install -y chromium")
    with tempfile.TemporaryDirectory(prefix="gid-chromium-") as profile:
        w, h = window_size
        cmd = [executable, *FLAGS, f"--window-size={w},{h}", f"--user-data-dir={profile}",
               "--dump-dom", f"--virtual-time-budget={int(budget_ms)}", url]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            raise TimeoutError(f"chromium did not finish {url} in {timeout:g} s; it said: "
                               f"{err.decode(errors='replace')[-1500:]}") from None
        finally:
            _kill_group(proc)      # its renderer and utility processes, should any be left
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited with {proc.returncode} on {url}: "
                           f"{err.decode(errors='replace')[-1500:]}")
    return out.decode(errors="replace")


CHECK_ID = "gid-media-check"
# Waits until every <img>, <video> and same-site <a href> has loaded or failed (or the budget is
# nearly spent), then writes {title, rows, height, images, videos, links} into <pre id=CHECK_ID>.
_CHECK_SCRIPT = """<script>(async () => {
  const once = (el, names) => new Promise(r => names.forEach(n => el.addEventListener(n, r, {once: true})));
  const imgs = [...document.images], vids = [...document.querySelectorAll("video")];
  const links = [...document.querySelectorAll("a[href]")].filter(a => a.origin === location.origin);
  const heads = links.map(a => fetch(a.href, {method: "HEAD"}).then(r => r.ok, () => false));
  const waits = imgs.map(i => i.complete ? 0 : once(i, ["load", "error"])).concat(vids.map(v => {
    if (v.readyState >= 1 || v.error) return 0;
    const p = Promise.race([once(v, ["loadedmetadata", "error"]),
                            ...[...v.querySelectorAll("source")].map(s => once(s, ["error"]))]);
    v.preload = "metadata"; v.load(); return p;
  }), heads);
  await Promise.race([Promise.all(waits), new Promise(r => setTimeout(r, BUDGET))]);
  const ok = await Promise.all(heads.map(h => Promise.race([h, false])));
  const box = el => { const b = el.getBoundingClientRect(); return [b.width, b.height]; };
  const src = v => v.getAttribute("src") || (v.querySelector("source") || {getAttribute: () => ""}).getAttribute("src");
  const out = {title: document.title, rows: document.querySelectorAll("tr").length,
    height: document.body.scrollHeight,
    images: imgs.map(i => ({src: i.getAttribute("src"), ok: i.complete && i.naturalWidth > 0,
                            natural: [i.naturalWidth, i.naturalHeight], box: box(i)})),
    videos: vids.map(v => ({src: src(v), ok: v.readyState >= 1 && !v.error,
                            ready: v.readyState, error: v.error && v.error.code, box: box(v)})),
    links: links.map((a, n) => ({src: a.getAttribute("href"), ok: ok[n] === true}))};
  const pre = document.createElement("pre"); pre.id = "CHECK_ID"; pre.hidden = true;
  pre.textContent = JSON.stringify(out); document.body.append(pre);
})();</script>"""


class _InjectingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; the one page under test gets the checking script before </body>."""

    def __init__(self, *args, page: str, script: str, **kwargs):
        self.page, self.script = page, script
        super().__init__(*args, **kwargs)

    def do_GET(self):
        if self.path.split("?", 1)[0] != "/" + self.page:
            return super().do_GET()
        text = (Path(self.directory) / self.page).read_text(encoding="utf-8")
        at = text.rfind("</body>")
        body = (text[:at] + self.script + text[at:] if at >= 0 else text + self.script).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:   # quiet: a test's output is for its failures
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """Chromium drops media and HEAD connections early, and all of them as it exits."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def check_page_media(root, page: str = "index.html", *, executable: str | None = None,
                     budget_ms: int = 15_000, timeout: float = 90.0) -> dict:
    """Serves ``root`` on 127.0.0.1, opens ``root/page`` in headless Chromium and reports what
    the browser made of it: ``{"title", "rows" (<tr> count), "height" (px), "images", "videos",
    "links" (each ``{"src", "ok", ...}``: an image decoded with a size, a video's metadata read,
    a same-site link's HEAD answered 2xx), "broken" (the ``src`` of every one that is not ok)}``.
    Served over HTTP rather than file:// so that links can be fetched."""
    root = Path(root).resolve()
    page = Path(page).as_posix()
    if not (root / page).is_file():
        raise FileNotFoundError(f"{root / page}: no such page")
    script = _CHECK_SCRIPT.replace("CHECK_ID", CHECK_ID).replace("BUDGET", str(max(1000, budget_ms - 2000)))
    handler = functools.partial(_InjectingHandler, page=page, script=script, directory=str(root))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        dom = dump_dom(f"http://127.0.0.1:{server.server_address[1]}/{page}", executable=executable,
                       budget_ms=budget_ms, timeout=timeout)
    finally:
        server.shutdown()
        server.server_close()
    found = re.search(rf'<pre id="{CHECK_ID}"[^>]*>(.*?)</pre>', dom, re.S)
    if found is None:
        raise RuntimeError(f"{page}: the checking script left no result (a script error, or the "
                           f"page never finished loading); the DOM ends: {dom[-500:]!r}")
    result = json.loads(html.unescape(found.group(1)))
    result["broken"] = [x["src"] for kind in ("images", "videos", "links") for x in result[kind]
                        if not x["ok"]]
    return result
