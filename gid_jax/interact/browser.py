"""Open the interactive page in headless Chromium, for tests and benchmarks.

No WebDriver and no extra packages: the page itself reports what it draws (``?autodrag=`` runs a
scripted drag and posts canvas checksums, frame rates and errors to ``/telemetry``), so the
caller reads the results from `InteractServer.telemetry_records` while Chromium runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

__all__ = ["HeadlessChromium", "find_chromium", "wait_for_telemetry"]

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


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
        cmd = [self.executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-dev-shm-usage", "--mute-audio",
               f"--window-size={w},{h}", f"--user-data-dir={self._profile}", self.url]
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
