"""Fréchet distance between Gaussians fitted to feature sets: FID (Inception pool3), FVD (I3D).

    FD = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})

Statistics accumulate in float64 (`FeatureStats`: streaming, mergeable across hosts, saved as
``.npz``). The trace term uses Tr((S1 S2)^{1/2}) = sum_i sqrt(lambda_i(A S2 A)) with
A = S1^{1/2} (symmetric PSD square root from an eigendecomposition): A S2 A is symmetric PSD, so its
eigenvalues are real and non-negative up to rounding (clipped at 0), and no complex matrix square
root is needed.

From features with fewer samples than dimensions (FID on a few hundred frames in 2048-d, FVD
on a few dozen windows in 400-d) the covariances have rank < n and the same distance is exact
and much cheaper in sample space: with A, B the centred feature matrices (n1 x D, n2 x D),
S1 = AᵀA/(n1-1), S2 = BᵀB/(n2-1), the nonzero eigenvalues of S1 S2 are the squared singular
values of A Bᵀ / sqrt((n1-1)(n2-1)), so Tr((S1 S2)^{1/2}) is the nuclear norm of that
n1 x n2 matrix (`frechet_distance_from_features` picks the cheaper form).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gid_jax.atomic import atomic_path


def _as_features(x, who: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"{who}: features must be (N, D), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{who}: features contain NaN/Inf")
    return x


@dataclass
class FeatureStats:
    """Streaming first and second moments of ``(N, D)`` features (float64)."""

    n: int = 0
    sum: np.ndarray | None = None
    sum_outer: np.ndarray | None = None

    def update(self, feats) -> "FeatureStats":
        f = _as_features(feats, "FeatureStats.update")
        if self.sum is None:
            self.sum = np.zeros(f.shape[1])
            self.sum_outer = np.zeros((f.shape[1], f.shape[1]))
        if f.shape[1] != self.sum.shape[0]:
            raise ValueError(f"FeatureStats.update: dimension {f.shape[1]} != {self.sum.shape[0]}")
        self.n += f.shape[0]
        self.sum += f.sum(0)
        self.sum_outer += f.T @ f
        return self

    @classmethod
    def from_features(cls, feats) -> "FeatureStats":
        return cls().update(feats)

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        if other.n == 0:
            return self
        if self.n == 0:
            return FeatureStats(other.n, other.sum.copy(), other.sum_outer.copy())
        return FeatureStats(self.n + other.n, self.sum + other.sum, self.sum_outer + other.sum_outer)

    @property
    def mean(self) -> np.ndarray:
        return self.sum / self.n

    @property
    def cov(self) -> np.ndarray:
        """Unbiased sample covariance (N-1 denominator, as numpy.cov and the FID references)."""
        if self.n < 2:
            raise ValueError(f"FeatureStats: need at least 2 samples for a covariance, have {self.n}")
        mu = self.mean
        return (self.sum_outer - self.n * np.outer(mu, mu)) / (self.n - 1)

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, ".npz") as tmp:
            np.savez(tmp, n=self.n, sum=self.sum, sum_outer=self.sum_outer, mu=self.mean, sigma=self.cov)
        return path

    @classmethod
    def load(cls, path) -> "FeatureStats":
        try:
            with np.load(path) as z:
                return cls(int(z["n"]), z["sum"], z["sum_outer"])
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"{path}: not a FeatureStats file ({e})") from None


def _sqrtm_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1, sigma2) -> float:
    """Tr((S1 S2)^{1/2}) for symmetric PSD S1, S2."""
    a = _sqrtm_psd(np.asarray(sigma1, np.float64))
    m = a @ np.asarray(sigma2, np.float64) @ a
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sum(np.sqrt(np.clip(w, 0, None))))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet (2-Wasserstein²) distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"frechet_distance: shapes {mu1.shape} {sigma1.shape} {mu2.shape} {sigma2.shape}")
    diff = mu1 - mu2
    fd = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return float(max(fd, 0.0))


def frechet_distance_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


def frechet_distance_from_features(feats_a, feats_b) -> float:
    """FD between Gaussians fitted to two ``(N, D)`` feature sets (FID / FVD given features)."""
    a = _as_features(feats_a, "frechet_distance_from_features")
    b = _as_features(feats_b, "frechet_distance_from_features")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance_from_features: dimensions {a.shape[1]} and {b.shape[1]}")
    if min(len(a), len(b)) >= a.shape[1]:
        return frechet_distance_from_stats(FeatureStats.from_features(a), FeatureStats.from_features(b))
    return _frechet_sample_space(a, b)


def _frechet_sample_space(a: np.ndarray, b: np.ndarray) -> float:
    """The same distance through the n1 x n2 cross-Gram matrix (module docstring)."""
    n1, n2 = len(a), len(b)
    if n1 < 2 or n2 < 2:
        raise ValueError(f"FeatureStats: need at least 2 samples for a covariance, have {min(n1, n2)}")
    diff = a.mean(0) - b.mean(0)
    ca, cb = a - a.mean(0), b - b.mean(0)
    tr_a, tr_b = np.sum(ca * ca) / (n1 - 1), np.sum(cb * cb) / (n2 - 1)
    nuclear = np.sum(np.linalg.svd(ca @ cb.T, compute_uv=False)) / np.sqrt((n1 - 1) * (n2 - 1))
    return float(max(diff @ diff + tr_a + tr_b - 2.0 * nuclear, 0.0))


fid_from_features = frechet_distance_from_features
fvd_from_features = frechet_distance_from_features
