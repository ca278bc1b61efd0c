"""`gid eval`: a sweep cell = one trained pipeline × sampler settings (or one baseline),
evaluated on the clips of a test split.

For every test example of a prepared dataset (its start frame I0 and the spectral volume
measured from the real video), a model cell samples a spectral volume from I0 and scores it

* in motion space (`motion_metrics`: per-frequency errors, endpoint error, loop seam);
* by the learning metrics (`gid_jax.eval.learning`, keys ``learn_*``: localisation AUC,
  amplitude ratio, spectrum log error, own-scene amplitude correlation, image dependence, over
  ``config.diversity_seeds`` samples of the first ``config.diversity_videos`` images amplitude
  agreement and phase diversity; references ``learn_auc_fixed_map`` and
  ``learn_image_dependence_truth``);
* by the seam ratios of the video's motion (`gid_jax.motion.seam_ratios`, keys ``seam_*``:
  mean over clips where something moves, ``seam_clips`` of them);
* with ``config.videos_dir`` set, by the video metrics (`gid_jax.eval.video_scores`): it
  renders, for every clip, the video the checkpoint makes from I0 with as many frames, at the
  same fps, as the real clip (`gid_jax.eval.clips`), and compares the set with the real clips:
  FID/KID on frames, FVD16/FVD32 with the Kinetics I3D, DTFVD16/32 with a Dynamic-Textures
  I3D if given, sliding-window FID/DTFVD curves, every number beside its sample count;
* and the renderer on the split's frame pairs given the real motion (``render_psnr/ssim``).

The ``num_freqs`` axis keeps the first K bins of a K_model sample: an inference-time
truncation, labelled as such (``k_mode = "truncated"``, ``"full"`` where K = K_model), not a model
trained with K bins. Its value ``"trained"`` (or no such axis) samples each checkpoint with the
K it was trained with (``k_mode = "trained"``, ``model_num_freqs``): the paper's Table 2, models
trained per K on the ``checkpoints`` axis. A checkpoint ``RUN@STEP`` is that pipeline with its
LDM weights of that training step (`gid_jax.eval.checkpoint_steps`). Each row states
the CFG weight it sampled with (``cfg_weight``). Baseline rows (`gid_jax.eval.methods`) go
through the same code on the same clips; ``splat`` is a second row of each model cell made from
the same samples. Real clips' features are computed once and cached in
``OUT/real_features/``; videos are written to ``OUT/videos/`` only with ``config.keep_videos``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from gid_jax.eval import clips as clip_data
from gid_jax.eval import learning, methods
from gid_jax.eval.image_metrics import frame_metrics
from gid_jax.eval.motion_metrics import motion_metrics

DIVERSITY_SEED_STRIDE = 100_003   # extra samples of image i use seed + i + s * stride, s >= 1
SAMPLER_AXES = ("num_steps", "guidance_weight", "solver")
PIPELINE_DEFAULT = "pipeline"      # an axis value meaning "the checkpoint's own setting"
TRAINED_K = "trained"              # num_freqs: the K the checkpoint was trained with


def test_examples(data_dir: str, split: str, limit: int = -1) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image (H,W,3) in [0,1], spectral volume (K,H,W,4) in pixels) pairs of a prepared split."""
    return [(c.image, c.true_sv.astype(np.float32)) for c in clip_data.read_clips(data_dir, split, limit)]


def test_pairs(data_dir: str, split: str, limit: int = -1) -> list[dict]:
    """Renderer pairs (I0, I_t, flow I0→I_t, W) of a prepared split, unflipped, in order."""
    return clip_data.read_pairs(data_dir, split, limit)


def make_cell_evaluator(config, networks=None) -> "CellEvaluator":
    """The evaluator `gid_jax.eval.sweep.run_sweep` calls: ``evaluator(cell) -> {metric:
    float}`` (the cell's first row) and ``evaluator.rows(cell)`` (all its rows).
    ``networks``: a `video_scores.Networks` instead of the real feature networks (tests)."""
    return CellEvaluator(config, networks)


class CellEvaluator:
    def __init__(self, config, networks=None):
        self.config = config
        self.out = Path(config.get("out_dir", "runs/eval"))
        self.video = bool(config.get("videos_dir", "")) and config.get("metrics") is not None
        self._networks, self._spec = networks, None
        limit = int(config.num_videos)
        if self.video:
            self.clips = clip_data.read_clips(config.data_dir, config.split, limit)
            self.examples = [(c.image, c.true_sv) for c in self.clips]
            self.real = clip_data.RealClips(config.videos_dir, config.data_dir,
                                            int(config.metrics.num_frames))
            self.real.check(self.clips)
            from gid_jax.eval import video_scores

            self._spec = video_scores.MetricSpec.from_config(config.metrics, int(config.seed))
            if networks is None:
                video_scores.weight_paths(config.metrics)   # missing weights: fail before sampling
        else:
            self.examples = test_examples(config.data_dir, config.split, limit)
            self.clips = self.real = None
        self.pairs = test_pairs(config.data_dir, config.split, limit)
        self.masks = [learning.moving_mask_from_sv(np.asarray(sv, np.float32)) for _, sv in self.examples]
        self.num_seeds = int(config.get("diversity_seeds", 2))
        self.num_diverse = min(len(self.examples), int(config.get("diversity_videos", 2)))
        self.keep_videos = bool(config.get("keep_videos", False))
        self.media_clips = int(config.get("report_clips", 0) or 0)
        self._real_feats = self._fixed = None
        self._pipelines: dict = {}
        self._data_period = None
        self._rendering: dict = {}   # per checkpoint: pair scores
        self.skipped_video_note = (None if self.video else
                                   "video metrics skipped: config.videos_dir is empty (set it to "
                                   "the folder `gid prepare --videos` read)")

    # ------------------------------------------------------------------ plumbing
    def __call__(self, cell: dict) -> dict:
        return self.rows(cell)[0]["metrics"]

    def pipeline(self, path):
        """The checkpoint of a cell (``RUN@STEP``: that training step), loaded once."""
        from gid_jax.eval.checkpoint_steps import load_pipeline

        if path not in self._pipelines:
            self._pipelines[path] = load_pipeline(path)
        return self._pipelines[path]

    def period(self, pipe) -> int:
        """T the spectra describe: the checkpoint's, else the data's (baselines without one)."""
        from gid_jax import motion

        if pipe is not None:
            return int(pipe.settings.period)
        if self._data_period is None:
            try:
                self._data_period = int(clip_data.prepared_settings(self.config.data_dir)["num_frames"])
            except (OSError, ValueError):
                self._data_period = motion.NUM_FRAMES
        return self._data_period

    def lengths(self, pipe=None) -> list[int]:
        """Frames per clip: the real clip's (video metrics) or one period T."""
        if self.video:
            return [int(f["n"]) for f in self.real_features()]
        return [self.period(pipe)] * len(self.examples)

    def speed(self, pipe) -> float:
        return methods.speed_for(pipe, self.real.fps) if (self.video and pipe is not None) else 1.0

    def networks(self):
        from gid_jax.eval import video_scores

        if self._networks is None:
            self._networks = video_scores.load_networks(self.config.metrics)
        if self._spec is None:
            self._spec = video_scores.MetricSpec.from_config(self.config.metrics, int(self.config.seed))
        return self._networks, self._spec

    def real_features(self) -> list[dict]:
        """Features of every real clip, cached on disk when the networks have an identity."""
        from gid_jax.eval import video_scores

        if self._real_feats is not None:
            return self._real_feats
        nets, spec = self.networks()
        key = {"data_dir": str(Path(self.config.data_dir).resolve()), "split": self.config.split,
               "clips": [[c.video, c.start_frame] for c in self.clips],
               "videos_dir": str(Path(self.config.videos_dir).resolve()),
               "num_frames": self.real.num_frames, "spec": dataclasses.asdict(spec),
               "networks": nets.identity}
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        path = self.out / "real_features" / f"{digest}.npz"
        feats = video_scores.load_feature_sets(path, key) if nets.identity else None
        if feats is not None:   # cached: write only the real clips asked for and not yet there
            for clip in self.clips:
                gif = self.out / "media" / "real" / f"{clip.name}.gif"
                mp4 = self.out / "videos" / "real" / f"{clip.name}.mp4"
                if (self.keep_videos and not mp4.exists()) or (clip.index < self.media_clips
                                                               and not gif.exists()):
                    self._keep("real", None, clip, self.real(clip), clip.true_sv)
        else:
            feats = []
            for clip in self.clips:
                frames = self.real(clip)
                feats.append(video_scores.clip_features(frames, nets, spec))
                self._keep("real", None, clip, frames, clip.true_sv)
            if nets.identity:
                video_scores.save_feature_sets(path, feats, key)
        self._real_feats = feats
        return feats

    def fixed_map(self):
        """(S, note) of the fixed-map baseline, per ``config.fixed_map_source``."""
        if self._fixed is None:
            source = str(self.config.get("fixed_map_source", "train"))
            if source == "test":
                sv, n = clip_data.fixed_map_sv([sv for _, sv in self.examples])
            elif source == "train":
                sv, n = clip_data.fixed_map_sv(data_dir=self.config.data_dir, split="train",
                                               limit=int(self.config.get("fixed_map_examples", 256)))
            else:
                raise ValueError(f"config.fixed_map_source must be 'train' or 'test', got {source!r}")
            self._fixed = (sv, f"fixed map: mean per-bin amplitude of {n} {source}-split examples, "
                               "in the x direction, one phase")
        return self._fixed

    def _keep(self, method, cell_id, clip, frames, sv) -> None:
        """Writes the clip when asked: every clip with keep_videos (mp4), the first
        report_clips as GIFs with their motion's amplitude map (PNG) for the HTML report."""
        from data_pipelines.video_io import write_gif, write_video

        where = Path("real") if cell_id is None else Path(cell_id) / method
        fps = self.real.fps
        if self.keep_videos:
            (self.out / "videos" / where).mkdir(parents=True, exist_ok=True)
            write_video(self.out / "videos" / where / f"{clip.name}.mp4", frames, fps)
        if clip.index < self.media_clips:
            folder = self.out / "media" / where
            folder.mkdir(parents=True, exist_ok=True)
            write_gif(folder / f"{clip.name}.gif", frames, fps)
            write_amplitude_png(folder / f"{clip.name}_motion.png", sv, clip.true_sv)

    # ------------------------------------------------------------------ rows
    def rows(self, cell: dict) -> list[dict]:
        method = cell.get("method", methods.MODEL)
        if method == methods.MODEL:
            return self._model_rows(cell)
        truths = [np.asarray(sv, np.float32) for _, sv in self.examples]
        if method == "still":
            return [self._row("still", cell, None, [np.zeros_like(t) for t in truths],
                              lambda i, n: methods.still(self.examples[i][0], n))]
        pipe = self.pipeline(cell["checkpoint"])
        self._check_period(pipe, cell["checkpoint"])
        notes = []
        if method == "true_motion":
            svs = truths
        elif method == "fixed_map":
            sv, note = self.fixed_map()
            svs, notes = [sv] * len(truths), [note]
        else:
            raise ValueError(f"cell {cell.get('cell_id')}: unknown method {method!r}")
        speed = self.speed(pipe)
        render = lambda i, n: methods.render(pipe, self.examples[i][0], svs[i], n, speed,  # noqa: E731
                                             int(self.config.seed) + i)
        return [self._row(method, cell, pipe, svs, render, notes=notes)]

    def _check_period(self, pipe, path) -> None:
        if self.video and int(pipe.settings.period) != int(self.real.settings["num_frames"]):
            raise ValueError(f"config.checkpoints: {path} describes motion over T="
                             f"{pipe.settings.period} frames, but config.data_dir was prepared with "
                             f"num_frames={self.real.settings['num_frames']}")

    def _model_rows(self, cell) -> list[dict]:
        path = cell["checkpoint"]
        pipe = self.pipeline(path)
        self._check_period(pipe, path)
        model_k = int(pipe.ldm.num_freqs)
        k, k_mode = _k_setting(cell.get("num_freqs", TRAINED_K), model_k, path)
        settings = {name: cell[name] for name in SAMPLER_AXES
                    if name in cell and cell[name] != PIPELINE_DEFAULT}
        used = _used_settings(pipe, settings)

        def sample(image, seed):
            sv = pipe.predict_spectral_volume(image, seed=seed, **settings)
            sv[k:] = 0.0
            return sv

        preds, diverse = [], []
        for i, (image, _) in enumerate(self.examples):
            sv = sample(image, int(self.config.seed) + i)
            preds.append(sv)
            if i < self.num_diverse and self.num_seeds >= 2:
                diverse.append([sv] + [sample(image, int(self.config.seed) + i + s * DIVERSITY_SEED_STRIDE)
                                       for s in range(1, self.num_seeds)])
        from gid_jax.eval.checkpoint_steps import run_of

        run = run_of(path)           # the renderer is the same for every step of a run
        if run not in self._rendering:
            self._rendering[run] = self._pair_scores(pipe) if self.pairs else {}
        info = {"cfg_weight": used.guidance_weight, "solver_used": used.solver,
                "num_steps_used": used.num_steps, "model_num_freqs": model_k, "k_mode": k_mode}
        label = (f"{Path(str(path).rstrip('/')).name}: {used.solver} {used.num_steps} steps, "
                 f"CFG w={used.guidance_weight}, K={k}"
                 + {"truncated": f" (K={model_k} sample truncated to {k} bins)",
                    "trained": " (the K it was trained with)"}.get(k_mode, ""))
        notes = (["consistency sampler: guidance is built into the distilled weights"]
                 if used.solver == "consistency" else [])
        speed = self.speed(pipe)
        seed = lambda i: int(self.config.seed) + i  # noqa: E731
        rows = [self._row(methods.MODEL, cell, pipe, preds,
                          lambda i, n: methods.render(pipe, self.examples[i][0], preds[i], n, speed, seed(i)),
                          diverse=diverse, info={**info, "label": label}, notes=notes,
                          extra=self._rendering[run])]
        if "splat" in (self.config.get("baselines", ()) or ()):
            rows.append(self._row("splat", cell, pipe, preds,
                                  lambda i, n: methods.splat(pipe, self.examples[i][0], preds[i], n, speed),
                                  diverse=diverse, notes=notes,
                                  info={**info, "label": f"{label}, softmax splatting only"}))
        return rows

    def _pair_scores(self, pipe) -> dict:
        frames = [pipe.render(p["image"], p["flow"][None], p["mean_motion"][..., 0], batch_frames=1)[0]
                  for p in self.pairs]
        scores = frame_metrics(np.stack(frames), np.stack([p["target_image"] for p in self.pairs]))
        return {f"render_{name}": float(value) for name, value in scores.items()}

    def _row(self, method, cell, pipe, svs, make_frames, *, diverse=None, info=None, notes=(),
             extra=None) -> dict:
        """One table row: motion, learning and seam metrics of ``svs`` (one per clip) and, with
        videos, the video metrics of ``make_frames(i, n)`` against the real clips."""
        truths = [np.asarray(sv, np.float32) for _, sv in self.examples]
        period = self.period(pipe)
        metrics, motion_rows = {}, []
        for sv, truth in zip(svs, truths):
            kk = min(sv.shape[0], truth.shape[0])
            motion_rows.append(motion_metrics(np.asarray(sv[:kk], np.float32), truth[:kk],
                                              num_frames=period))
        metrics.update({name: float(np.mean([r[name] for r in motion_rows])) for name in motion_rows[0]})
        metrics.update(learning_scores([np.asarray(s, np.float32) for s in svs], truths, self.masks,
                                       diverse))
        lengths = self.lengths(pipe)
        metrics.update(self._seams(pipe, svs, lengths, period))
        metrics["clips"] = float(len(svs))
        notes = list(notes)
        curves = {}
        if self.video:
            from gid_jax.eval import video_scores

            nets, spec = self.networks()
            gen = []
            for i, clip in enumerate(self.clips):
                frames = make_frames(i, lengths[i])
                gen.append(video_scores.clip_features(frames, nets, spec))
                self._keep(method, cell["cell_id"], clip, frames, svs[i])
            vm, curves, vnotes = video_scores.score_feature_sets(gen, self.real_features(), spec, nets)
            metrics.update(vm)
            notes += vnotes
            if "fid" in vm or "fvd16" in vm:
                notes.append(f"counts: {int(vm.get('fid_frames', 0))} frames, "
                             f"{int(vm.get('fvd16_windows', 0))} 16-frame windows: Fréchet "
                             "distances are biased at these sample sizes; compare rows only")
        elif self.skipped_video_note:
            notes.append(self.skipped_video_note)
        metrics.update(extra or {})
        info = {"label": methods.LABELS.get(method, method), **(info or {})}
        return {"method": method, "metrics": metrics, "curves": curves, "notes": notes, "info": info}

    def _seams(self, pipe, svs, lengths, period) -> dict:
        """`motion.seam_ratios` of each clip's video motion (the wrap if it were looped), averaged
        over the clips where something moves."""
        from gid_jax import motion

        steps, accels = [], []
        speed = self.speed(pipe)
        for sv, n in zip(svs, lengths):
            if n < 4 or not np.any(sv):
                continue
            times = motion.frame_times(int(n), speed)
            traj = np.asarray(motion.to_trajectories(np.asarray(sv, np.float32), times=times,
                                                     period=period))
            r = motion.seam_ratios(traj)
            if np.isfinite(r["step_ratio"]) and np.isfinite(r["accel_ratio"]):
                steps.append(r["step_ratio"])
                accels.append(r["accel_ratio"])
        if not steps:
            return {}
        return {"seam_step_ratio": float(np.mean(steps)), "seam_accel_ratio": float(np.mean(accels)),
                "seam_clips": float(len(steps))}


def _k_setting(value, model_k: int, path) -> tuple[int, str]:
    """(bins kept, k_mode) of a cell's ``num_freqs``: ``"trained"`` → all of the checkpoint's
    own K; an integer K ≤ K_model → the first K bins ("full" where K = K_model)."""
    if value == TRAINED_K:
        return model_k, "trained"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ValueError(f"config.grid.num_freqs: {value!r}, expected an integer K or "
                         f"{TRAINED_K!r} (the K each checkpoint was trained with)")
    k = int(value)
    if not 1 <= k <= model_k:
        raise ValueError(f"config.grid.num_freqs: {k}, but the model at {path} predicts "
                         f"{model_k} bins (use {TRAINED_K!r} for models trained with different K)")
    return k, "truncated" if k < model_k else "full"


def write_amplitude_png(path, sv, true_sv) -> Path:
    """The motion's amplitude map A(p) (`learning.amplitude_map`) as a colour image, on the
    scale of the true map's 99th percentile (so the rows of one clip compare)."""
    import matplotlib
    from PIL import Image

    from gid_jax.atomic import atomic_path

    amp = learning.amplitude_map(np.asarray(sv, np.float32))
    scale = float(np.percentile(learning.amplitude_map(np.asarray(true_sv, np.float32)), 99)) or 1.0
    rgb = matplotlib.colormaps["magma"](np.clip(amp / scale, 0.0, 1.0))[..., :3]
    with atomic_path(path, ".png") as tmp:
        Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)).save(tmp)
    return Path(path)


def _used_settings(pipe, overrides: dict):
    """The sampler settings a cell actually runs: the checkpoint's, with the cell's overrides."""
    import types

    base = pipe.settings
    if dataclasses.is_dataclass(base):
        used = dataclasses.replace(base, **overrides).validate()
        return types.SimpleNamespace(guidance_weight=float(used.guidance_weight),
                                     solver=used.solver, num_steps=int(used.num_steps))
    merged = {**vars(base), **overrides}       # a stand-in pipeline (tests)
    return types.SimpleNamespace(**{k: merged.get(k) for k in ("guidance_weight", "solver", "num_steps")})


def learning_scores(preds, truths, masks, diverse=None) -> dict:
    """``learn_*`` metrics of a cell (finite values only: e.g. image dependence needs 2 videos)."""
    scores = {f"learn_{name}": v
              for name, v in learning.score_predictions(preds, truths, masks, diverse or None).items()}
    if len(truths) >= 2:
        fixed = [learning.fixed_amplitude_sv(truths, i) for i in range(len(truths))]
        scores["learn_auc_fixed_map"] = learning.score_predictions(fixed, truths, masks)["auc"]
        scores["learn_image_dependence_truth"] = learning.image_dependence(truths, truths)
    return {name: float(v) for name, v in scores.items() if v is not None and np.isfinite(v)}
