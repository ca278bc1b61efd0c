"""The Apache Beam side of the prepare job (`gid prepare`): its two stages on one runner.

Stage 1 (`run_flow_stage`): per video, optical flow + spectral volumes into OUT/cache
(`data_pipelines.clip_cache`), distributed over workers, videos already cached not scheduled.
Stage 2 (`GidMotion`, a TFDS Beam builder, one run per dataset config): reads the cache, keeps the
clips that passed the filters and writes the examples (`data_pipelines.dataset_format` schema);
for `spectral`, a CombineFn gathers the train split's normalisation statistics in the same pass.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path

import apache_beam as beam
import numpy as np

from data_pipelines import dataset_format as fmt
from data_pipelines import storage
from data_pipelines.clip_cache import current_summary, ensure_cache, flow_function, load_cache

log = logging.getLogger(__name__)
_BUILDER = None


# ==============================================================================================
# Running the stages


def beam_pipeline_options(beam_options: list[str] | None, settings: dict, verbose: bool = False):
    """Beam `PipelineOptions` from command-line style flags, with DirectRunner defaults.

    Local worker processes log every start-up and channel event at INFO straight to the
    console; unless `verbose`, they log WARNING and up only.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    flags = list(beam_options or [])
    runner = next((f.split("=", 1)[1] for f in flags if f.startswith("--runner=")), "DirectRunner")
    if runner in ("DirectRunner", "direct", "PrismRunner"):
        if not any(f.startswith("--direct_num_workers") for f in flags):
            flags.append(f"--direct_num_workers={settings['num_workers'] or os.cpu_count() or 1}")
        if not any(f.startswith("--direct_running_mode") for f in flags):
            flags.append(f"--direct_running_mode={settings['direct_running_mode']}")
        if not verbose and not any(f.startswith("--default_sdk_harness_log_level") for f in flags):
            flags.append("--default_sdk_harness_log_level=WARNING")
    bad = [f for f in flags if not f.startswith("--")]
    if bad:
        raise ValueError(f"bad Beam pipeline options {bad}: each must look like --name=value")
    return PipelineOptions(flags)


class _CacheProgress:
    """tqdm bar over videos whose cache summary exists, polled while stage 1 runs."""

    def __init__(self, cache_dir: str, keys: list[str], enabled: bool):
        self.cache_dir, self.keys, self.enabled = cache_dir, set(keys), enabled
        self._stop = threading.Event()

    def _done(self) -> int:
        try:
            if storage.is_remote(self.cache_dir):
                import tensorflow as tf
                names = tf.io.gfile.listdir(self.cache_dir)
            else:
                names = os.listdir(self.cache_dir)
        except Exception:  # noqa: BLE001 - the folder may not exist yet
            return 0
        return len({n[:-5] for n in names if n.endswith(".json")} & self.keys)

    def __enter__(self):
        if self.enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=len(self.keys), initial=self._done(), unit="video",
                            desc="optical flow + spectra", dynamic_ncols=True)
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def _run(self):
        while not self._stop.wait(1.0):
            self._update()

    def _update(self):
        done = self._done()
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)

    def __exit__(self, *exc):
        if self.enabled:
            self._stop.set()
            self.thread.join()
            self._update()
            self.bar.close()


def run_flow_stage(sources: list[dict], settings: dict, cache_dir: str, options,
                   progress: bool = True) -> list[dict]:
    """Stage 1 of the prepare job: optical flow + spectra per video into the cache; returns
    every summary.

    Videos whose summary is already there are not scheduled at all (resume).
    """
    todo = [e for e in sources if current_summary(cache_dir, e, settings) is None]
    if todo:
        if not storage.is_remote(cache_dir):
            os.makedirs(cache_dir, exist_ok=True)
        with _CacheProgress(cache_dir, [e["key"] for e in sources], progress):
            with beam.Pipeline(options=options) as pipeline:
                _ = (pipeline
                     | "Videos" >> beam.Create(todo)
                     | "Distribute" >> beam.Reshuffle()
                     | "FlowAndSpectra" >> beam.ParDo(CacheVideo(settings, cache_dir)))
    summaries = []
    for e in sources:
        summary = current_summary(cache_dir, e, settings)
        if summary is None:
            raise RuntimeError(f"{e['path']}: the flow stage finished without a result for this video")
        summaries.append(dict(summary, split=e["split"], key=e["key"], path=e["path"]))
    return summaries


# ==============================================================================================
# Beam pieces


class CacheVideo(beam.DoFn):
    """Per video: flow for every start frame → OUT/cache/KEY.npz (skipped when present)."""

    def __init__(self, settings, cache_dir):
        self.settings, self.cache_dir = settings, cache_dir

    def setup(self):
        # A worker process must not grab a whole accelerator for a jnp.fft call.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        self.flow_fn = flow_function(self.settings["flow_backend"])

    def process(self, element):
        yield ensure_cache(element, self.settings, self.cache_dir, self.flow_fn)


class EmitExamples(beam.DoFn):
    """One video's cache → its kept clips as (key, example) on the split's tag (+ stats input)."""

    def __init__(self, settings, kind):
        self.settings, self.kind = settings, kind

    def process(self, element):
        s, split, video = self.settings, element["split"], element["relpath"]
        c = load_cache(element["cache"])
        for i in element["keep"]:
            start = int(c["start_frames"][i])
            base = dict(image=c["images"][i], mean_motion=c["mean_motion"][i], video=video,
                        start_frame=np.int32(start))
            if self.kind == "spectral":
                sv = fmt.decode_spectral_volume_np(c["sv"][i], c["sv_scale"][i])
                data, scale = fmt.encode_spectral_volume(sv, s["sv_encoding"])
                stored = fmt.decode_spectral_volume_np(data, scale)
                if not np.all(np.isfinite(stored)):
                    raise ValueError(f"{element['path']}: non-finite spectral volume at frame {start}")
                yield beam.pvalue.TaggedOutput(split, (f"{video}@{start}", dict(
                    base, spectral_volume=data, spectral_scale=scale)))
                if split == "train":
                    yield beam.pvalue.TaggedOutput("stats", stored)
            else:
                for j, t in enumerate(c["pair_t"][i]):
                    yield beam.pvalue.TaggedOutput(split, (f"{video}@{start}+{int(t)}", dict(
                        base, target_image=c["pair_images"][i, j], flow=c["pair_flow"][i, j],
                        target_frame=np.int32(t))))


class NormalizerCombineFn(beam.CombineFn):
    """FrequencyNormalizer histograms as the accumulator: merges across workers by addition."""

    def __init__(self, num_freqs, percentile, magnitude):
        self.args = (num_freqs, percentile, magnitude)

    def create_accumulator(self):
        from gid_jax.motion import FrequencyNormalizer
        return FrequencyNormalizer(*self.args)

    def add_input(self, acc, sv):
        return acc.update(sv)

    def merge_accumulators(self, accs):
        accs = list(accs)
        first = accs[0]
        for other in accs[1:]:
            first.merge(other)
        return first

    def extract_output(self, acc):
        return acc


def _write_normalizer(norm, path: str):
    if norm.num_examples == 0:
        log.warning("no training examples: %s not written", path)
        return None
    if storage.is_remote(path):
        local = os.path.join(tempfile.mkdtemp(prefix="gid_norm_"), "normalization.json")
        norm.save(local)
        storage.write_atomic(path, Path(local).read_bytes())
        return path
    norm.save(path)
    return path


# ==============================================================================================
# TFDS builder


def builder_class():
    """The TFDS builder (defined once, lazily, so that importing this module stays light)."""
    global _BUILDER
    if _BUILDER is not None:
        return _BUILDER
    import tensorflow_datasets as tfds

    from tensorflow_datasets.core import registered

    with registered.skip_registration():
        cls = _define_builder(tfds)
    _BUILDER = cls
    return cls


def _define_builder(tfds):
    class GidMotion(tfds.core.GeneratorBasedBuilder):
        """Spectral volumes (`spectral`) and renderer pairs (`pairs`) from a folder of videos."""

        VERSION = tfds.core.Version(fmt.VERSION)
        RELEASE_NOTES = {fmt.VERSION: "Long-range flow, K-bin spectral volumes, the filters of docs/method.md §8."}
        BUILDER_CONFIGS = [
            tfds.core.BuilderConfig(name="spectral", description="start frame + spectral volume"),
            tfds.core.BuilderConfig(name="pairs", description="renderer pairs (I0, I_t, flow, t, W)"),
        ]

        # No checksums / metadata files live beside this module. (TFDS 4.9.10 would otherwise
        # look for them through `importlib_resources`, which it does not declare as a dependency.)
        @tfds.core.utils.classproperty
        @classmethod
        def code_path(cls):
            return None

        def __init__(self, *, settings: dict, elements: list[dict], verbose: bool = False, **kwargs):
            # elements: one per video with kept clips: relpath, path, split, cache, keep.
            self._settings, self._elements, self._verbose = settings, elements, verbose
            super().__init__(**kwargs)

        # TFDS prints "Downloading and preparing dataset …" and "Dataset … downloaded and
        # prepared to …" to stdout for every dataset config; nothing is downloaded here and
        # `gid prepare` prints one summary of its own, so they show only with --verbose.
        def _log_download_bytes(self):
            if self._verbose:
                super()._log_download_bytes()

        def _log_download_done(self):
            if self._verbose:
                super()._log_download_done()

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, description=fmt.DESCRIPTION,
                features=fmt.features(self.builder_config.name, self._settings),
                metadata=tfds.core.MetadataDict(fmt.metadata(self._settings)))

        def _split_generators(self, dl_manager, pipeline):
            del dl_manager
            s, kind = self._settings, self.builder_config.name
            data_dir = os.fspath(self.data_dir)  # the temporary folder TFDS renames at the end
            splits = sorted({e["split"] for e in self._elements})  # TFDS refuses empty splits
            outs = (pipeline
                    | "Videos" >> beam.Create(self._elements)
                    | "Distribute" >> beam.Reshuffle()
                    | "Examples" >> beam.ParDo(EmitExamples(s, kind)).with_outputs("stats", *splits))
            if kind == "spectral":
                _ = (outs.stats
                     | "Statistics" >> beam.CombineGlobally(
                         NormalizerCombineFn(s["num_freqs"], s["percentile"], s["magnitude"]))
                     | "WriteStatistics" >> beam.Map(_write_normalizer,
                                                     path=storage.join(data_dir, "normalization.json")))
            return {split: outs[split] for split in splits}

        def _generate_examples(self):  # everything happens in _split_generators
            raise NotImplementedError

    # dataset_info.json records the builder's module; the writer's public home keeps the
    # datasets identical to those written before the module was split.
    GidMotion.__module__ = "data_pipelines.prepare"
    return GidMotion
