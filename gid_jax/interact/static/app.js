// gid interact page: drag a point of the image, release, watch the scene respond.
//
// The server simulates the modes and renders the frames; this page
//  * draws the still on a canvas at image resolution (#view, scaled with CSS) and the drag
//    vector on an overlay canvas at screen resolution (#overlay), so #view only ever holds frames;
//  * on release POSTs /drag {x, y, dx, dy} (image pixels), then fetches frames in small batches
//    (GET /frames?n=K: one image with the K frames stacked, rows per frame in X-Frame-Stride),
//    keeps a few queued and plays them at the scene's fps with requestAnimationFrame;
//  * stops when the server reports less than rest_threshold pixels of motion left (X-Motion);
//  * shows the frame rate actually displayed ("12.3 fps", frames drawn over each second of
//    animation; the last value stays, dimmed, at rest) and the render mode in the corner.
// Query options: ?autodrag=x,y,dx,dy performs a scripted drag once loaded (synthetic pointer
// events through the same handlers), &repeat=N drags again each time the scene comes to rest,
// N more times; ?telemetry=1 (implied by autodrag) POSTs canvas checksums, fps and errors to
// /telemetry, ?telemetry=fps the same without the per-frame canvas checksums (benchmarks).
// Plain JS, no dependencies.
(function () {
  'use strict';

  const params = new URLSearchParams(location.search);
  const telemetryOn = params.has('telemetry') || params.has('autodrag');
  const checksumsOn = telemetryOn && params.get('telemetry') !== 'fps';
  const stage = document.getElementById('stage');
  const view = document.getElementById('view');
  const overlay = document.getElementById('overlay');
  const ctx = view.getContext('2d', { willReadFrequently: checksumsOn });
  const octx = overlay.getContext('2d');
  const hudEl = document.getElementById('hud');
  const fpsEl = document.getElementById('fps');
  const modeEl = document.getElementById('mode');
  const statusEl = document.getElementById('status');
  const errorEl = document.getElementById('error');

  let info = null;        // /state at load: width, height, fps, rest_threshold, max_frames
  let still = null;       // ImageBitmap of the still image
  let generation = 0;     // bumped by every drag/reset: responses for older ones are dropped
  let queue = [];         // frames ready to draw: {bmp, y, last}
  let animating = false;
  let fetching = false;
  let serverDone = false; // the server said the motion has decayed (for this generation)
  let lastDraw = 0;
  let batch = 3;          // frames per request, adapted to the measured round trip
  let renderMs = 0;
  let drag = null;        // {x0, y0, x1, y1} in image pixels while the pointer is down
  let telemetryBuf = [];
  let telemetryTimer = null;
  let framesDrawn = 0;
  let fpsStart = null;    // when the frame that opened the current ~1 s fps window was drawn
  let fpsFrames = 0;      // frames drawn since then
  let fpsValue = 0;       // the last frame rate shown
  let fpsShown = false;   // a full window was shown during this animation
  let autodragSpec = null;
  let autodragLeft = Math.max(0, parseInt(params.get('repeat') || '0', 10) || 0);

  // ---------------------------------------------------------------- helpers

  function setStatus(text) { statusEl.textContent = text; }

  function showError(err) {
    const msg = (err && err.message) ? err.message : String(err);
    errorEl.textContent = msg;
    report({ kind: 'error', message: msg });
  }

  async function errorText(res) {
    let text = res.status + ' ' + res.statusText;
    try {
      const body = await res.json();
      if (body && body.error) text += ': ' + body.error;
    } catch (e) { /* not JSON */ }
    return text;
  }

  async function postJSON(path, obj) {
    const res = await fetch(path, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(obj), cache: 'no-store',
    });
    if (!res.ok) throw new Error(path + ': ' + await errorText(res));
    return res.status === 204 ? null : res.json();
  }

  function report(record) {
    if (!telemetryOn) return;
    record.t = Math.round(performance.now());
    telemetryBuf.push(record);
    if (telemetryTimer === null) {
      telemetryTimer = setTimeout(flushTelemetry, 200);
    }
  }

  function flushTelemetry() {
    telemetryTimer = null;
    if (!telemetryBuf.length) return;
    const records = telemetryBuf;
    telemetryBuf = [];
    fetch('/telemetry', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(records), keepalive: true,
    }).catch(function () { /* server gone: nothing to report to */ });
  }

  // FNV-1a over the canvas pixels (32-bit words): a cheap fingerprint of what is on screen.
  function canvasChecksum() {
    const data = ctx.getImageData(0, 0, view.width, view.height).data;
    const words = new Uint32Array(data.buffer, data.byteOffset, data.byteLength >> 2);
    let h = 0x811c9dc5;
    for (let i = 0; i < words.length; i++) {
      h = Math.imul(h ^ words[i], 0x01000193);
    }
    return (h >>> 0).toString(16).padStart(8, '0');
  }

  // Client (CSS px) → image pixel coordinates.
  function toImage(clientX, clientY) {
    const r = view.getBoundingClientRect();
    return {
      x: (clientX - r.left) * view.width / r.width,
      y: (clientY - r.top) * view.height / r.height,
    };
  }

  function layout() {
    if (!info) return;
    // Scale the image up to a comfortable size (whole multiples stay crisp), fit the window.
    const avail = Math.max(160, Math.min(document.documentElement.clientWidth - 32, 1068));
    let scale = Math.max(1, Math.floor(Math.min(avail / info.width, 720 / info.height)));
    if (info.width * scale > avail) scale = avail / info.width;
    const w = Math.round(info.width * scale), h = Math.round(info.height * scale);
    view.style.width = w + 'px';
    view.style.height = h + 'px';
    const dpr = window.devicePixelRatio || 1;
    overlay.width = Math.round(w * dpr);
    overlay.height = Math.round(h * dpr);
    overlay.style.width = w + 'px';
    overlay.style.height = h + 'px';
    drawOverlay();
  }

  function drawOverlay() {
    octx.clearRect(0, 0, overlay.width, overlay.height);
    if (!drag) return;
    const sx = overlay.width / view.width, sy = overlay.height / view.height;
    const x0 = drag.x0 * sx, y0 = drag.y0 * sy, x1 = drag.x1 * sx, y1 = drag.y1 * sy;
    const dpr = window.devicePixelRatio || 1;
    octx.lineWidth = 2.5 * dpr;
    octx.strokeStyle = '#ffd54f';
    octx.fillStyle = '#ffd54f';
    octx.beginPath();
    octx.arc(x0, y0, 4 * dpr, 0, 2 * Math.PI);
    octx.fill();
    const len = Math.hypot(x1 - x0, y1 - y0);
    if (len < 1) return;
    octx.beginPath();
    octx.moveTo(x0, y0);
    octx.lineTo(x1, y1);
    octx.stroke();
    const ang = Math.atan2(y1 - y0, x1 - x0), head = Math.min(14 * dpr, len * 0.5);
    octx.beginPath();
    octx.moveTo(x1, y1);
    octx.lineTo(x1 - head * Math.cos(ang - 0.45), y1 - head * Math.sin(ang - 0.45));
    octx.lineTo(x1 - head * Math.cos(ang + 0.45), y1 - head * Math.sin(ang + 0.45));
    octx.closePath();
    octx.fill();
  }

  function drawStill() {
    ctx.drawImage(still, 0, 0);
    if (checksumsOn) report({ kind: 'still', checksum: canvasChecksum() });
  }

  // ---------------------------------------------------------------- animation

  function dropQueue() {
    for (const f of queue) if (f.last) f.bmp.close();
    queue = [];
  }

  // Frame rate = frames drawn after the frame that opened the window / the window's length,
  // shown once the window spans a second; at rest a shorter last window is shown only when
  // the whole animation was shorter than a second.
  function countFrame(now) {
    if (fpsStart === null) { fpsStart = now; fpsFrames = 0; } else { fpsFrames++; }
  }

  function updateFps(now, atRest) {
    const elapsed = fpsStart === null ? 0 : now - fpsStart;
    if (elapsed >= 1000 || (atRest && !fpsShown && fpsFrames > 0)) {
      fpsValue = fpsFrames * 1000 / elapsed;
      fpsShown = fpsShown || elapsed >= 1000;
      fpsEl.textContent = fpsValue.toFixed(1) + ' fps';
      hudEl.title = 'frames displayed per second (' + fpsFrames + ' frames in ' +
                    (elapsed / 1000).toFixed(2) + ' s); server: ' + renderMs.toFixed(1) + ' ms/frame';
      report({ kind: 'fps', fps: fpsValue, frames: fpsFrames, ms: Math.round(elapsed),
               full: elapsed >= 1000, label: fpsEl.textContent, renderer: info.renderer,
               render_ms: renderMs });
      fpsStart = now;
      fpsFrames = 0;
    }
    if (atRest) fpsStart = null;
    hudEl.classList.toggle('idle', atRest);
  }

  let pumpPromise = null; // the running pump(): a new drag waits for it, so that no request
                          // for the old motion consumes frames of the new one on the server
  function pump() {
    if (fetching || !animating || serverDone) return;
    fetching = true;
    pumpPromise = pumpLoop();
  }

  async function pumpLoop() {
    const gen = generation;
    try {
      while (animating && gen === generation && !serverDone && queue.length < 2 * batch) {
        const n = Math.max(1, Math.min(queue.length === 0 ? Math.min(batch, 2) : batch,
                                       info.max_frames));
        const t0 = performance.now();
        const res = await fetch('/frames?n=' + n, { cache: 'no-store' });
        if (!res.ok) throw new Error('/frames: ' + await errorText(res));
        const count = parseInt(res.headers.get('X-Num-Frames'), 10);
        const stride = parseInt(res.headers.get('X-Frame-Stride'), 10);
        const motion = parseFloat(res.headers.get('X-Motion'));
        renderMs = parseFloat(res.headers.get('X-Render-Ms')) || 0;
        const bmp = await createImageBitmap(await res.blob());
        if (gen !== generation) { bmp.close(); return; }
        // Batch so that one round trip covers ~2 frame periods of playback, within limits.
        const perFrame = (performance.now() - t0) / count;
        batch = Math.max(2, Math.min(info.max_frames, 8,
                                     Math.ceil(2 * perFrame * info.fps / 1000) + 1));
        for (let i = 0; i < count; i++) queue.push({ bmp: bmp, y: i * stride, last: i === count - 1 });
        if (!(motion >= info.rest_threshold)) serverDone = true;
        setStatus('motion left ≤ ' + motion.toFixed(2) + ' px');
      }
    } catch (err) {
      if (gen === generation) { animating = false; showError(err); }
    } finally {
      fetching = false;
    }
  }

  function tick(now) {
    if (!animating) return;
    const period = 1000 / info.fps;
    if (queue.length && now - lastDraw >= period - 4) {
      const f = queue.shift();
      ctx.drawImage(f.bmp, 0, f.y, view.width, view.height, 0, 0, view.width, view.height);
      if (f.last) f.bmp.close();
      // steady pacing at the scene's fps; re-anchor after a stall
      lastDraw = (now - lastDraw < 2 * period) ? lastDraw + period : now;
      countFrame(now);
      framesDrawn++;
      if (checksumsOn) {
        report({ kind: 'frame', checksum: canvasChecksum(), n: framesDrawn, fps: fpsValue });
      }
    }
    updateFps(now, false);   // also during a stall: a second without frames shows as such
    if (!queue.length && serverDone && !fetching) {
      animating = false;
      updateFps(now, true);
      drawStill();
      setStatus('at rest: drag again');
      report({ kind: 'rest', frames: framesDrawn });
      if (autodragSpec && autodragLeft > 0) {
        autodragLeft--;
        setTimeout(function () { autodrag(autodragSpec); }, 0);
      }
      return;
    }
    pump();
    requestAnimationFrame(tick);
  }

  function startAnimation() {
    serverDone = false;
    if (!animating) {
      animating = true;
      lastDraw = 0;
      fpsStart = null;
      fpsShown = false;
      hudEl.classList.remove('idle');
      requestAnimationFrame(tick);
    }
    pump();
  }

  async function release(d) {
    let dx = d.x1 - d.x0, dy = d.y1 - d.y0;
    const len = Math.hypot(dx, dy);
    if (len < 0.5) { setStatus('drag a little further'); return; }
    if (info.max_drag && len > info.max_drag) {   // the server refuses longer drags
      dx *= info.max_drag / len;
      dy *= info.max_drag / len;
    }
    const x = Math.min(info.width - 1, Math.max(0, d.x0));
    const y = Math.min(info.height - 1, Math.max(0, d.y0));
    generation++;
    dropQueue();
    if (pumpPromise) await pumpPromise;
    try {
      await postJSON('/drag', { x: x, y: y, dx: dx, dy: dy });
      errorEl.textContent = '';
      report({ kind: 'drag', x: x, y: y, dx: dx, dy: dy });
      setStatus('released (' + x.toFixed(0) + ', ' + y.toFixed(0) + ') by (' +
                dx.toFixed(1) + ', ' + dy.toFixed(1) + ') px');
      startAnimation();
    } catch (err) {
      showError(err);
    }
  }

  // ---------------------------------------------------------------- input

  stage.addEventListener('pointerdown', function (ev) {
    if (!info || ev.button > 0) return;
    const p = toImage(ev.clientX, ev.clientY);
    drag = { x0: p.x, y0: p.y, x1: p.x, y1: p.y, id: ev.pointerId };
    try { stage.setPointerCapture(ev.pointerId); } catch (e) { /* synthetic event */ }
    drawOverlay();
    ev.preventDefault();
  });

  stage.addEventListener('pointermove', function (ev) {
    if (!drag || ev.pointerId !== drag.id) return;
    const p = toImage(ev.clientX, ev.clientY);
    drag.x1 = p.x;
    drag.y1 = p.y;
    drawOverlay();
  });

  function endDrag(ev, cancelled) {
    if (!drag || ev.pointerId !== drag.id) return;
    const d = drag;
    drag = null;
    drawOverlay();
    if (!cancelled) release(d);
  }
  stage.addEventListener('pointerup', function (ev) { endDrag(ev, false); });
  stage.addEventListener('pointercancel', function (ev) { endDrag(ev, true); });

  document.getElementById('reset').addEventListener('click', async function () {
    generation++;
    dropQueue();
    animating = false;
    fpsStart = null;
    hudEl.classList.add('idle');
    if (pumpPromise) await pumpPromise;
    try {
      await postJSON('/reset', {});
      drawStill();
      setStatus('reset: drag a point of the image');
    } catch (err) { showError(err); }
  });

  window.addEventListener('resize', layout);

  // Scripted drag through the real pointer handlers: ?autodrag=x,y,dx,dy (image pixels).
  function autodrag(spec) {
    const v = spec.split(',').map(Number);
    if (v.length !== 4 || v.some(function (a) { return !isFinite(a); })) {
      showError('autodrag must be x,y,dx,dy numbers, got ' + spec);
      return;
    }
    const r = view.getBoundingClientRect();
    const toClient = function (x, y) {
      return { clientX: r.left + x * r.width / view.width, clientY: r.top + y * r.height / view.height };
    };
    const fire = function (type, x, y) {
      const c = toClient(x, y);
      stage.dispatchEvent(new PointerEvent(type, {
        bubbles: true, cancelable: true, pointerId: 1, pointerType: 'mouse', isPrimary: true,
        button: 0, buttons: type === 'pointerup' ? 0 : 1, clientX: c.clientX, clientY: c.clientY,
      }));
    };
    const [x, y, dx, dy] = v;
    fire('pointerdown', x, y);
    fire('pointermove', x + dx / 2, y + dy / 2);
    fire('pointermove', x + dx, y + dy);
    fire('pointerup', x + dx, y + dy);
  }

  // ---------------------------------------------------------------- start

  async function init() {
    try {
      const res = await fetch('/state', { cache: 'no-store' });
      if (!res.ok) throw new Error('/state: ' + await errorText(res));
      info = await res.json();
      view.width = info.width;
      view.height = info.height;
      const img = await fetch('/image.png', { cache: 'no-store' });
      if (!img.ok) throw new Error('/image.png: ' + await errorText(img));
      still = await createImageBitmap(await img.blob());
      layout();
      drawStill();
      modeEl.textContent = info.renderer || '';
      setStatus(info.width + '×' + info.height + ' scene, ' + info.fps + ' fps, ' +
                (info.renderer || 'renderer') + ': press on the image, drag, release');
      report({ kind: 'ready', width: info.width, height: info.height, renderer: info.renderer });
      autodragSpec = params.get('autodrag');
      if (autodragSpec) autodrag(autodragSpec);
    } catch (err) {
      showError(err);
    }
  }

  window.addEventListener('error', function (ev) { report({ kind: 'error', message: String(ev.message) }); });
  init();
})();
