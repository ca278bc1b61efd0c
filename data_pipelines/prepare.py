"""Videos → training datasets: long-range flow, spectral volumes, renderer pairs (docs/method.md §8).

What it does
------------
For every video under `videos_dir` (files and frame folders, see `data_pipelines.video_io`):

1. decode at `config.fps` (30) and resize + centre-crop to `config.width x config.height`;
2. every `config.stride`-th frame (10) with `num_frames - 1` frames after it is a start frame I0;
   optical flow is computed from I0 *directly* to each following frame (long-range, never
   chained), giving trajectories F `(T, H, W, 2)`, F[0] = 0;
3. F → spectral volume S `(K, H, W, 4)` = `gid_jax.motion.to_spectral_volume(F, K)`;
4. filters (docs/method.md §8, final version), on W(p) = mean_{t=1..T-1} |F_t(p)| in pixels:
   *camera motion*: dropped if at least 95% of the pixels have W > 1 px; *static*: dropped if the
   mean of W is below 1 px (thresholds are config fields; counts land in the report);
5. for each kept start frame, `config.pairs_per_clip` target frames t are sampled for the
   renderer: (I0, I_t, flow I0→I_t = F_t, t, W).

Videos are split train/test by a hash of their path relative to `videos_dir` (10% test), so no
video feeds both. This is the prepare job: two stages on one Apache Beam runner, the writing one
inside a TFDS dataset builder (`GidMotion`, configs `spectral` and `pairs`). The per-frequency normalisation statistics
(`gid_jax.motion.FrequencyNormalizer` histograms as a Beam CombineFn) of the train split are
computed in the same pass and written as `normalization.json` inside the dataset folder.

Output layout, dataset schema and the measured precision of the on-disk spectral volumes: see
`data_pipelines.dataset_format`. Per-video work and the cache: `data_pipelines.clip_cache`;
the two Beam stages and the TFDS builder: `data_pipelines.beam_writer`.

Running it
----------
Locally (DirectRunner, one worker process per CPU core, progress bar with ETA over videos;
Beam's INFO logging and TFDS's "Downloading and preparing dataset" lines only with `--verbose`):

    gid prepare --videos ~/videos --out ~/data/gid --config configs/prepare.py:paper

Distributed, on any Beam runner: everything after `--` is passed to Beam as pipeline options.
Videos, OUT and the cache may be on GCS (read/written through tf.io.gfile). The workers need
this package: build an sdist (`python -m build --sdist`) and ship it with `--extra_package`:

    gid prepare --videos gs://BUCKET/videos --out gs://BUCKET/gid_data \\
        --config configs/prepare.py:paper -- \\
        --runner=DataflowRunner --project=PROJECT --region=us-central1 \\
        --temp_location=gs://BUCKET/tmp --extra_package=dist/gid_jax-0.1.0.tar.gz \\
        --machine_type=n2-highcpu-16 --max_num_workers=200
    # Flink / Spark: --runner=FlinkRunner --flink_master=HOST:8081 --environment_type=LOOPBACK
    #                --runner=SparkRunner  --spark_master_url=spark://HOST:7077

From Python: `prepare(videos_dir, out_dir, config, beam_options=["--runner=..."])`.

Resuming
--------
The expensive part (flow for every start frame of a video) is cached per video in
OUT/cache/NAME-HASH.npz, written under a temporary name and renamed, keyed by the video's relative
path, size, mtime and every setting that changes the flow result. Re-running after a crash skips
finished videos; TFDS writes each dataset in a temporary folder and renames it at the end, so a
killed run leaves no half-written dataset. Re-running a finished prepare only prints a message.
Unreadable, corrupt or too-short videos are reported (`PrepareResult.skipped`, report.json) and
skipped; a damaged cache file is reported and recomputed; frame folders with missing frames are
split at the gaps (`PrepareResult.gaps`, report.json `missing_frames`). Run one `prepare` per OUT
at a time (stale temporaries of killed runs are removed).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path

from data_pipelines import storage
from data_pipelines.clip_cache import DROP_REASONS, FILTER_FIELDS, MOTION_SOURCES, source_elements
from data_pipelines.dataset_format import CONFIG_NAMES, DATASET_NAME, SPLITS, SV_ENCODINGS, VERSION

log = logging.getLogger(__name__)


# ==============================================================================================
# Settings


def _settings(config) -> dict:
    """ml_collections config (or dict) → validated plain dict (picklable, JSON-able)."""
    get = (lambda k: config[k]) if isinstance(config, dict) else (lambda k: getattr(config, k))
    fields = dict(
        fps=float, width=int, height=int, num_frames=int, stride=int, num_freqs=int,
        max_frames_per_video=int, flow_backend=str, motion_source=str, close_loops=bool,
        camera_motion_threshold_px=float,
        camera_motion_fraction=float, static_threshold_px=float, pairs_per_clip=int, seed=int,
        test_fraction=float, sv_encoding=str, tensor_encoding=str, keep_cache=bool,
        percentile=float, magnitude=str, num_workers=int, direct_running_mode=str)
    s = {}
    for name, typ in fields.items():
        try:
            value = get(name)
        except (KeyError, AttributeError):
            raise ValueError(f"prepare config is missing field '{name}' (see configs/prepare.py)") from None
        s[name] = typ(value) if value is not None else ("" if typ is str else value)
    checks = [
        (s["fps"] > 0, "fps must be > 0"),
        (s["width"] > 0 and s["height"] > 0, "width and height must be > 0"),
        (s["num_frames"] >= 2, "num_frames must be >= 2"),
        (s["stride"] >= 1, "stride must be >= 1"),
        (1 <= s["num_freqs"] <= s["num_frames"] // 2 + 1, "num_freqs must be in [1, num_frames//2+1]"),
        (s["max_frames_per_video"] == 0 or s["max_frames_per_video"] >= s["num_frames"],
         "max_frames_per_video must be 0 (no limit) or >= num_frames"),
        (0.0 <= s["test_fraction"] < 1.0, "test_fraction must be in [0, 1)"),
        (0.0 < s["camera_motion_fraction"] <= 1.0, "camera_motion_fraction must be in (0, 1]"),
        (s["pairs_per_clip"] >= 0, "pairs_per_clip must be >= 0"),
        (s["sv_encoding"] in SV_ENCODINGS, f"sv_encoding must be one of {SV_ENCODINGS}"),
        (s["tensor_encoding"] in ("zlib", "bytes"), "tensor_encoding must be 'zlib' or 'bytes'"),
        (s["direct_running_mode"] in ("in_memory", "multi_threading", "multi_processing"),
         "direct_running_mode must be in_memory, multi_threading or multi_processing"),
        (s["num_workers"] >= 0, "num_workers must be >= 0"),
        (s["motion_source"] in MOTION_SOURCES, f"motion_source must be one of {MOTION_SOURCES}"),
        _flow_backend_check(s["flow_backend"]),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(f"bad prepare config: {msg}")
    # The cache holds float16 spectra (float32 for float32 datasets); lossy dataset encodings
    # are made from it when the examples are written, so the cache serves every encoding.
    s["sv_encoding_cache"] = "float32" if s["sv_encoding"] == "float32" else "float16"
    return s


def _flow_backend_check(backend: str) -> tuple[bool, str]:
    """Checked up front: an unknown name would otherwise mark every video unreadable and record
    its settings, so that a rerun with the right name is refused as 'different settings'."""
    from gid_jax.flow import available_backends

    known = available_backends()
    return (backend in ("", *known),
            f"flow_backend must be '' (the default) or one of {', '.join(known)}; got {backend!r}")


# ==============================================================================================
# Driver


@dataclasses.dataclass
class PrepareResult:
    """What `prepare` did. Counts are per split ('train', 'test'); `dropped` per reason."""

    out_dir: str
    dataset_dirs: dict[str, str | None]   # 'spectral' / 'pairs' → TFDS dataset folder
    normalization_path: str | None        # per-frequency statistics of the train split
    report_path: str                      # OUT/report.json: per-video outcome
    videos: dict[str, int]                # readable videos per split
    clips: dict[str, int]                 # start frames considered per split
    examples: dict[str, int]              # spectral-volume examples per split (kept clips)
    pairs: dict[str, int]                 # renderer pairs per split
    dropped: dict[str, int]               # 'camera_motion' / 'static' → clips dropped
    skipped: list[tuple[str, str]]        # (video, reason): unreadable / corrupt / too short
    already_prepared: bool = False
    seconds: float = 0.0
    # (frame folder, missing frame numbers): clips are split at these gaps
    gaps: list[tuple[str, list[int]]] = dataclasses.field(default_factory=list)


def _remove_stale_temporaries(out_dir: str, cache_dir: str) -> int:
    """Temp files of killed runs (`.X.tmp-*`, TFDS `incomplete.*` folders); local OUT only."""
    if storage.is_remote(out_dir):
        return 0
    removed = 0
    for folder in [Path(cache_dir), Path(out_dir)] + [Path(out_dir, DATASET_NAME, c) for c in CONFIG_NAMES]:
        if not folder.is_dir():
            continue
        for f in folder.iterdir():
            if (f.name.startswith(".") and ".tmp-" in f.name) or f.name.startswith("incomplete."):
                shutil.rmtree(f, ignore_errors=True) if f.is_dir() else f.unlink(missing_ok=True)
                removed += 1
    if removed:
        log.info("removed %d temporaries of an interrupted run", removed)
    return removed


def _check_recorded_settings(out_dir: str, settings: dict) -> None:
    path = storage.join(out_dir, "prepare_config.json")
    fixed = {k: v for k, v in settings.items()
             if k not in ("num_workers", "direct_running_mode", "keep_cache")}
    if storage.exists(path):
        try:
            recorded = json.loads(storage.read_bytes(path))
        except json.JSONDecodeError:
            recorded = None
        if isinstance(recorded, dict):
            recorded.setdefault("motion_source", "flow")   # folders prepared before the field
        if recorded is not None and recorded != fixed:
            diff = sorted(k for k in set(recorded) | set(fixed) if recorded.get(k) != fixed.get(k))
            raise ValueError(f"{out_dir}: already holds data prepared with different settings "
                             f"({', '.join(diff)}); use another output folder")
        if recorded is not None:
            return
    storage.write_json(path, fixed)


def _report(summaries: list[dict], settings: dict) -> dict:
    totals = {split: dict(videos=0, clips=0, examples=0, pairs=0, **{r: 0 for r in DROP_REASONS})
              for split in SPLITS}
    skipped = []
    for v in summaries:
        if v["status"] == "error":
            skipped.append(dict(video=v["video"], error=v["error"]))
            continue
        t = totals[v["split"]]
        t["videos"] += 1
        t["clips"] += len(v["clips"])
        for c in v["clips"]:
            if c["drop"]:
                t[c["drop"]] += 1
            else:
                t["examples"] += 1
                t["pairs"] += min(settings["pairs_per_clip"], settings["num_frames"] - 1)
    videos = []
    for v in summaries:
        entry = {k: v.get(k) for k in ("video", "split", "status", "error", "motion", "num_frames",
                                       "seconds", "clips")}
        if v.get("missing_frames"):
            entry["missing_frames"] = v["missing_frames"]
        videos.append(entry)
    return dict(totals=totals, skipped=skipped, thresholds={k: settings[k] for k in FILTER_FIELDS},
                videos=videos)


def _result(out_dir, dataset_dirs, report, already, seconds) -> PrepareResult:
    totals = report["totals"]
    norm = storage.join(dataset_dirs["spectral"], "normalization.json")
    return PrepareResult(
        out_dir=out_dir, dataset_dirs=dataset_dirs,
        normalization_path=norm if storage.exists(norm) else None,
        report_path=storage.join(out_dir, "report.json"),
        videos={s: totals[s]["videos"] for s in SPLITS},
        clips={s: totals[s]["clips"] for s in SPLITS},
        examples={s: totals[s]["examples"] for s in SPLITS},
        pairs={s: totals[s]["pairs"] for s in SPLITS},
        dropped={r: sum(totals[s][r] for s in SPLITS) for r in DROP_REASONS},
        skipped=[(r["video"], r["error"]) for r in report["skipped"]],
        already_prepared=already, seconds=seconds,
        gaps=[(v["video"], v["missing_frames"]) for v in report["videos"] if v.get("missing_frames")])


def prepare(videos_dir: str | os.PathLike, out_dir: str | os.PathLike, config,
            beam_options: list[str] | None = None, progress: bool = True,
            verbose: bool = False) -> PrepareResult:
    """Turns a folder of videos into the `spectral` and `pairs` TFDS datasets under `out_dir`.

    The prepare job, in two stages on the same Beam runner: (1) optical flow + spectral volumes
    per video into OUT/cache (resumable), (2) per dataset, the TFDS writer (+ the normalisation
    statistics).

    Args:
      videos_dir: folder of video files / frame folders (local or gs://...).
      out_dir: output folder (created); see the module docstring for its layout.
      config: `configs/prepare.py` config (ml_collections ConfigDict or a dict).
      beam_options: Beam pipeline flags, e.g. `["--runner=DataflowRunner", "--project=..."]`;
        none → local DirectRunner with `config.num_workers` workers.
      progress: progress bar with ETA over videos, and a summary at the end.
      verbose: let local Beam workers log at INFO (start-up, channels), and TFDS print its
        "Downloading and preparing dataset" lines; else WARNING and up, and no TFDS lines.

    Raises:
      FileNotFoundError: `videos_dir` does not exist.
      ValueError: no videos found, no clip passed the filters, bad config or Beam options, or
        `out_dir` was prepared with different settings.
    """
    from data_pipelines.beam_writer import builder_class, beam_pipeline_options, run_flow_stage

    t0 = time.perf_counter()
    settings = _settings(config)
    videos_dir, out_dir = os.fspath(videos_dir), os.fspath(out_dir)
    sources = source_elements(videos_dir, settings)
    if not sources:
        raise ValueError(f"{videos_dir}: no videos found (looked for video files and folders of frames)")
    if not storage.is_remote(out_dir):
        os.makedirs(out_dir, exist_ok=True)
    _check_recorded_settings(out_dir, settings)
    cache_dir = storage.join(out_dir, "cache")
    report_path = storage.join(out_dir, "report.json")
    names = [n for n in CONFIG_NAMES if n != "pairs" or settings["pairs_per_clip"] > 0]
    dataset_dirs = {n: storage.join(out_dir, DATASET_NAME, n, VERSION) if n in names else None
                    for n in CONFIG_NAMES}
    if all(storage.exists(storage.join(dataset_dirs[n], "dataset_info.json")) for n in names) and storage.exists(report_path):
        result = _result(out_dir, dataset_dirs, json.loads(storage.read_bytes(report_path)), True,
                         time.perf_counter() - t0)
        if progress:
            print(f"{out_dir}: already prepared ({sum(result.examples.values())} examples from "
                  f"{len(sources)} video sources); nothing to do")
        return result
    _remove_stale_temporaries(out_dir, cache_dir)
    options = beam_pipeline_options(beam_options, settings, verbose=verbose)

    summaries = run_flow_stage(sources, settings, cache_dir, options, progress)
    report = _report(summaries, settings)
    elements = []
    for v in summaries:
        keep = [i for i, c in enumerate(v["clips"]) if not c["drop"]]
        if v["status"] == "ok" and keep:
            elements.append(dict(relpath=v["video"], path=v["path"], split=v["split"], keep=keep,
                                 cache=storage.join(cache_dir, v["key"] + ".npz")))
    if not elements:
        storage.write_json(report_path, report)
        t = report["totals"]
        raise ValueError(
            f"{videos_dir}: no clip passed the filters ({len(report['skipped'])} unreadable videos, "
            f"{sum(t[s]['camera_motion'] for s in SPLITS)} clips with camera motion, "
            f"{sum(t[s]['static'] for s in SPLITS)} static clips; see {report_path})")
    if not any(e["split"] == "train" for e in elements):
        log.warning("no training clips passed the filters; normalization.json is not written")

    import tensorflow_datasets as tfds

    cls = builder_class()
    for name in names:
        builder = cls(settings=settings, elements=elements, data_dir=out_dir, config=name, verbose=verbose)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(beam_options=options))
    storage.write_json(report_path, report)
    if not settings["keep_cache"] and not storage.is_remote(cache_dir):
        shutil.rmtree(cache_dir, ignore_errors=True)
    result = _result(out_dir, dataset_dirs, report, False, time.perf_counter() - t0)
    if progress:
        print(summary(result))
    return result


def summary(result: PrepareResult) -> str:
    """Human-readable account of a `PrepareResult`."""
    lines = [f"{result.out_dir}: already prepared" if result.already_prepared
             else f"prepared {result.out_dir} in {result.seconds:.1f} s"]
    for s in SPLITS:
        lines.append(f"  {s}: {result.videos[s]} videos, {result.clips[s]} clips, "
                     f"{result.examples[s]} spectral examples, {result.pairs[s]} renderer pairs")
    lines.append("  dropped clips: " + ", ".join(f"{k} {v}" for k, v in result.dropped.items()))
    for video, reason in result.skipped:
        lines.append(f"  skipped {video}: {reason}")
    for video, missing in result.gaps:
        lines.append(f"  {video}: missing frame{'s' * (len(missing) > 1)} "
                     f"{', '.join(map(str, missing))}; clips split there")
    for name, path in result.dataset_dirs.items():
        if path:
            lines.append(f"  {name}: {path}")
    return "\n".join(lines)
