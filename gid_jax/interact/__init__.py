"""Interactive dynamics (docs/method.md §7.3): drag a point of a still image and watch the scene respond.

`InteractiveSession` simulates the image-space modal basis frame by frame; `serve` puts it behind a
small local web page (stdlib `http.server`, bound to 127.0.0.1, with the limits of
`gid_jax.interact.guard`); `render_drag_response` / `write_drag_response` render one
drag-and-release headlessly; `gid_jax.interact.browser` opens the page in headless Chromium
(tests, `benchmarks/interactive_fps.py`).
"""

from gid_jax.interact.server import run_forever, serve
from gid_jax.interact.session import (InteractiveSession, SplatRenderer, render_drag_response,
                                      write_drag_response)

__all__ = ["InteractiveSession", "SplatRenderer", "render_drag_response", "run_forever", "serve",
           "write_drag_response"]
