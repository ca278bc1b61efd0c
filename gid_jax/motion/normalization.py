"""Frequency adaptive normalisation of spectral volumes (docs/method.md §3).

Per frequency k a scale s_k = the 95th percentile of coefficient magnitudes over the training
set; then S' = sign(S) * sqrt(|S| / s_k) elementwise on the 4 real channels, inverted exactly by
S = sign(S') * S'^2 * s_k. The percentile is estimated in one streaming pass from a per-frequency
histogram with logarithmic bins: memory does not grow with the data, histograms from many
workers or hosts merge by addition, and the estimate is within one bin (0.5% relative) of the
exact percentile.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from gid_jax.atomic import write_json_atomic

# Magnitudes below/above this range land in the first/last bin; spectral volumes in pixels span
# roughly 1e-3 .. 1e3 (docs/method.md §2.1: "0 to 100"), so the range is generous on both sides.
_LOG10_MIN, _LOG10_MAX = -6.0, 6.0
_BINS_PER_DECADE = 400  # bin width 10**(1/400) - 1 = 0.58% relative
MAGNITUDES = ("component", "complex")


def frequency_normalize(sv, scales):
    """S' = sign(S) * sqrt(|S| / s_k) of ``(..., K, H, W, 4)`` with per-frequency ``scales`` ``(K,)``
    (or ``(..., K)``, one set per example).

    The one implementation of the transform: numpy arrays stay numpy (data preparation), anything
    else goes through jnp (jit-able). The caller picks the dtype of ``scales``.
    """
    xp = np if isinstance(sv, np.ndarray) else jnp
    return xp.sign(sv) * xp.sqrt(xp.abs(sv) / scales[..., None, None, None])


def frequency_denormalize(sv_normalized, scales):
    """Exact inverse of `frequency_normalize`: S = sign(S') * S'^2 * s_k."""
    xp = np if isinstance(sv_normalized, np.ndarray) else jnp
    return xp.sign(sv_normalized) * xp.square(sv_normalized) * scales[..., None, None, None]


class FrequencyNormalizer:
    """Streaming per-frequency percentile statistics plus the sign-sqrt transform and its inverse.

    `magnitude="component"` takes the percentile over |Re| and |Im| of x and y separately (the
    transform acts on those 4 real channels); `"complex"` over the complex moduli |S_x|, |S_y|.
    The paper does not say which; "component" is our default (NOT RECOVERED, docs/method.md §3).
    """

    def __init__(self, num_freqs: int = 16, percentile: float = 95.0, magnitude: str = "component"):
        if magnitude not in MAGNITUDES:
            raise ValueError(f"magnitude must be one of {MAGNITUDES}, got {magnitude!r}")
        if not 0.0 < percentile < 100.0:
            raise ValueError(f"percentile must be in (0, 100), got {percentile}")
        self.num_freqs, self.percentile, self.magnitude = num_freqs, float(percentile), magnitude
        num_bins = int((_LOG10_MAX - _LOG10_MIN) * _BINS_PER_DECADE)
        self.counts = np.zeros((num_freqs, num_bins), np.int64)
        self.num_examples = 0
        self._scales: np.ndarray | None = None

    # -- statistics -------------------------------------------------------------------------
    def update(self, sv) -> "FrequencyNormalizer":
        """Adds a batch `(..., K, H, W, 4)` (numpy or jax) to the histograms."""
        sv = np.asarray(sv, np.float64)
        if sv.ndim < 4 or sv.shape[-4] != self.num_freqs or sv.shape[-1] != 4:
            raise ValueError(f"expected spectral volumes (..., {self.num_freqs}, H, W, 4), got {sv.shape}")
        if not np.all(np.isfinite(sv)):
            raise ValueError("spectral volume contains NaN or inf")
        if self.magnitude == "component":
            mags = np.abs(sv)
        else:
            mags = np.hypot(sv[..., :2], sv[..., 2:])
        mags = np.moveaxis(mags, -4, 0).reshape(self.num_freqs, -1)
        log_mags = np.log10(np.maximum(mags, 1e-300))
        idx = np.clip(((log_mags - _LOG10_MIN) * _BINS_PER_DECADE).astype(np.int64),
                      0, self.counts.shape[1] - 1)
        flat = idx + np.arange(self.num_freqs)[:, None] * self.counts.shape[1]
        self.counts += np.bincount(flat.ravel(), minlength=self.counts.size).reshape(self.counts.shape)
        self.num_examples += int(np.prod(sv.shape[:-4], dtype=np.int64))
        self._scales = None
        return self

    def merge(self, other: "FrequencyNormalizer") -> "FrequencyNormalizer":
        """Adds another normaliser's histograms (e.g. from another worker or host)."""
        if (other.num_freqs, other.percentile, other.magnitude) != (self.num_freqs, self.percentile, self.magnitude):
            raise ValueError("cannot merge normalisers with different num_freqs/percentile/magnitude")
        self.counts += other.counts
        self.num_examples += other.num_examples
        self._scales = None
        return self

    @property
    def scales(self) -> np.ndarray:
        """Per-frequency scale s_k `(K,)`: the percentile, interpolated geometrically in its bin."""
        if self._scales is None:
            totals = self.counts.sum(axis=1)
            if np.any(totals == 0):
                raise ValueError("FrequencyNormalizer has no statistics yet: call update() first")
            cumulative = np.cumsum(self.counts, axis=1)
            target = self.percentile / 100.0 * totals
            scales = []
            for k in range(self.num_freqs):
                b = int(np.searchsorted(cumulative[k], target[k], side="left"))
                below = cumulative[k, b - 1] if b > 0 else 0
                frac = (target[k] - below) / max(self.counts[k, b], 1)
                scales.append(10.0 ** (_LOG10_MIN + (b + frac) / _BINS_PER_DECADE))
            self._scales = np.asarray(scales, np.float32)
        return self._scales

    @classmethod
    def from_scales(cls, scales, percentile: float = 95.0, magnitude: str = "component"):
        """A normaliser with fixed scales (no histogram), e.g. for inference bundles."""
        scales = np.asarray(scales, np.float32)
        if scales.ndim != 1 or not np.all(np.isfinite(scales)) or np.any(scales <= 0):
            raise ValueError(f"scales must be a 1-D array of positive finite numbers, got {scales}")
        norm = cls(len(scales), percentile, magnitude)
        norm._scales = scales
        return norm

    # -- transform (pure jnp, jit-able) ------------------------------------------------------
    def normalize(self, sv):
        """S' = sign(S) * sqrt(|S| / s_k), on `(..., K, H, W, 4)`."""
        sv = jnp.asarray(sv)
        return frequency_normalize(sv, jnp.asarray(self.scales, sv.dtype))

    def denormalize(self, sv_normalized):
        """Exact inverse of `normalize`: S = sign(S') * S'^2 * s_k."""
        x = jnp.asarray(sv_normalized)
        return frequency_denormalize(x, jnp.asarray(self.scales, x.dtype))

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Writes scales and histograms as JSON, atomically (temp file, then rename)."""
        path = Path(path)
        payload = {
            "format": "gid_jax.FrequencyNormalizer/1",
            "num_freqs": self.num_freqs, "percentile": self.percentile,
            "magnitude": self.magnitude, "num_examples": self.num_examples,
            "scales": [float(s) for s in self.scales],
            "histogram": {"log10_min": _LOG10_MIN, "bins_per_decade": _BINS_PER_DECADE,
                          "counts": {str(k): _sparse(row) for k, row in enumerate(self.counts)}},
        }
        return write_json_atomic(path, payload)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FrequencyNormalizer":
        path = Path(path)
        try:
            payload = json.loads(path.read_text())
            norm = cls(int(payload["num_freqs"]), float(payload["percentile"]), payload["magnitude"])
            hist = payload["histogram"]
            if (hist["log10_min"], hist["bins_per_decade"]) != (_LOG10_MIN, _BINS_PER_DECADE):
                raise ValueError("histogram binning differs from this version's")
            for k, pairs in hist["counts"].items():
                for b, c in pairs:
                    norm.counts[int(k), int(b)] = int(c)
            norm.num_examples = int(payload["num_examples"])
            norm._scales = np.asarray(payload["scales"], np.float32)
            if norm._scales.shape != (norm.num_freqs,) or np.any(norm._scales <= 0):
                raise ValueError(f"'scales' must hold {norm.num_freqs} positive numbers")
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: normalisation statistics not found") from None
        except KeyError as err:
            raise ValueError(f"{path}: not valid normalisation statistics (missing field {err})") from None
        except (TypeError, ValueError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not valid normalisation statistics ({err})") from None
        return norm


def _sparse(row: np.ndarray) -> list[list[int]]:
    nonzero = np.flatnonzero(row)
    return [[int(b), int(row[b])] for b in nonzero]
