"""Training metrics: CLU metric collections, writers (TensorBoard + metrics.jsonl), MFU."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from clu import metric_writers, metrics as clu_metrics

log = logging.getLogger(__name__)

# Peak dense bf16 FLOP/s per device (vendor data sheets). Matched as a lower-case substring of
# `device.device_kind`, first match wins; unknown kinds (CPU) → MFU omitted.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("h100 pcie", 756e12),
    ("h100", 989e12),          # H100 SXM
    ("h200", 989e12),
    ("gh200", 989e12),
    ("a100", 312e12),
    ("v100", 125e12),          # fp16 tensor cores
    ("l4", 121e12),
    ("tpu v4", 275e12),
    ("tpu v5 lite", 197e12),   # v5e
    ("tpu v5e", 197e12),
    ("tpu v5p", 459e12),
    ("tpu v5", 459e12),        # v5p reports "TPU v5"
    ("tpu v6", 918e12),        # Trillium (v6e)
)


def peak_flops_per_device(device: jax.Device | None = None) -> float | None:
    device = device or jax.devices()[0]
    kind = getattr(device, "device_kind", "").lower()
    for key, peak in PEAK_BF16_FLOPS:
        if key in kind:
            return peak
    return None


def compiled_flops(compiled) -> float | None:
    """FLOPs of one call of a compiled (per-device, partitioned) program, from XLA cost analysis."""
    try:
        ca = compiled.cost_analysis()
    except Exception:  # some backends do not implement it
        return None
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else None
    if not ca or "flops" not in ca:
        return None
    flops = float(ca["flops"])
    return flops if flops > 0 else None


@flax.struct.dataclass
class UnmaskedAverage(clu_metrics.Average):
    """Average that ignores the step's validity mask (e.g. the skipped-step fraction)."""

    @classmethod
    def from_model_output(cls, values, mask=None, **_):
        return super().from_model_output(values)


def make_collection(names: Iterable[str], unmasked: Iterable[str] = ()) -> type[clu_metrics.Collection]:
    """A clu Collection with one Average per metric name (masked by step validity)."""
    unmasked = set(unmasked)
    fields = {}
    for n in names:
        base = UnmaskedAverage if n in unmasked else clu_metrics.Average
        fields[n] = base.from_output(n)
    return clu_metrics.Collection.create(**fields)


def collection_to_floats(collection: clu_metrics.Collection, prefix: str = "") -> dict[str, float]:
    values = jax.device_get(collection.compute())
    return {prefix + k: float(np.asarray(v)) for k, v in values.items()}


class JsonlWriter(metric_writers.MetricWriter):
    """Appends one JSON object per `write_scalars` call to a file: {"step": s, name: value, ...}."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", buffering=1)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]):
        rec = {"step": int(step)}
        for k, v in scalars.items():
            v = float(np.asarray(v))
            rec[k] = v if np.isfinite(v) else str(v)
        self._f.write(json.dumps(rec) + "\n")

    def write_summaries(self, step, values, metadata=None):
        pass

    def write_images(self, step, images):
        pass

    def write_videos(self, step, videos):
        pass

    def write_audios(self, step, audios, *, sample_rate):
        pass

    def write_texts(self, step, texts):
        pass

    def write_histograms(self, step, arrays, num_buckets=None):
        pass

    def write_hparams(self, hparams):
        self._f.write(json.dumps({"hparams": {k: str(v) for k, v in hparams.items()}}) + "\n")

    def flush(self):
        self._f.flush()

    def close(self):
        if not self._f.closed:
            self._f.close()


def create_writer(workdir: str | os.PathLike) -> metric_writers.MetricWriter:
    """TensorBoard event files + logging (+ metrics.jsonl) on process 0; logging only elsewhere."""
    primary = jax.process_index() == 0
    tb = metric_writers.create_default_writer(os.fspath(workdir), just_logging=not primary, asynchronous=True)
    if not primary:
        return tb
    return metric_writers.MultiWriter([tb, JsonlWriter(Path(workdir) / "metrics.jsonl")])


def read_metrics(workdir: str | os.PathLike, name: str = "metrics.jsonl") -> dict[int, dict[str, float]]:
    """{step: record} from metrics.jsonl; a step logged twice (re-run after a restart) keeps its last record."""
    out: dict[int, dict] = {}
    path = Path(workdir) / name
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        if "step" in rec:
            out.setdefault(int(rec["step"]), {}).update(rec)
    return out


def tree_nbytes(tree: Any, per_device: bool = False) -> int:
    """Bytes of a tree of arrays (or ShapeDtypeStructs); `per_device`: of one device's shard of
    each leaf, from its sharding."""
    def shape(x):
        return x.sharding.shard_shape(x.shape) if per_device else x.shape
    return int(sum(np.prod(shape(x)) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))
