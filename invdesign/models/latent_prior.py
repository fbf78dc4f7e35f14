"""A Gaussian mixture over a trained VAE's latent codes and conditions, to sample from.

A VAE's N(prior(y), I) prior is wider than the region its encodings occupy, so many prior draws
decode off the data (measured on vae-perov5: encodings lie 4.9 from the prior mean, a prior draw
8.0). Ex-post density estimation (Ghosh et al. 2020, "From variational to deterministic
autoencoders") fits a density to the encodings after training and samples from it instead.
Here the density is a Gaussian mixture over the joint vector [z, y] (y: standardised
conditions), so conditional sampling is exact Gaussian conditioning of each component on y:

    p(z | y) = sum_k w_k(y) N(z; m_k^z + A_k (y - m_k^y), S_k^zz - A_k S_k^yz),
    A_k = S_k^zy (S_k^yy)^-1,  w_k(y) proportional to w_k N(y; m_k^y, S_k^yy).

The number of components is chosen by the log-likelihood of held-out (validation) encodings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["LatentMixture"]

COMPONENTS: tuple[int, ...] = (1, 5, 10, 20, 50)
_REG = 1e-3  # added to covariance diagonals (encodings of collapsed dimensions are constant)


@dataclass(frozen=True)
class LatentMixture:
    """Gaussian mixture over [z, y]; `latent` is the size of z, the rest are conditions.

    Attributes:
        weights: (K,) mixture weights.
        means: (K, D + C) component means.
        covariances: (K, D + C, D + C) component covariances.
        latent: D, the number of latent dimensions.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    latent: int

    @property
    def n_components(self) -> int:
        return len(self.weights)

    @property
    def n_conditions(self) -> int:
        return self.means.shape[1] - self.latent

    @classmethod
    def fit(cls, z: np.ndarray, y: np.ndarray, *, z_val: np.ndarray, y_val: np.ndarray,
            components: Sequence[int] = COMPONENTS, seed: int = 0
            ) -> tuple[LatentMixture, dict[int, float]]:
        """Fit one mixture per number of components on (z, y); keep the one whose mean
        log-likelihood of (z_val, y_val) is highest.

        Returns:
            (the chosen mixture, {components: validation log-likelihood per crystal}).
        """
        from sklearn.mixture import GaussianMixture

        x, x_val = np.hstack([z, y]), np.hstack([z_val, y_val])
        if not (np.isfinite(x).all() and np.isfinite(x_val).all()):
            raise ValueError("latent codes and conditions must be finite")
        scores: dict[int, float] = {}
        best: GaussianMixture | None = None
        for k in sorted(set(int(c) for c in components)):
            if k > len(x) // 2:
                continue
            gm = GaussianMixture(k, covariance_type="full", reg_covar=_REG, random_state=seed,
                                 n_init=1, max_iter=200).fit(x)
            scores[k] = float(gm.score(x_val))
            if best is None or scores[k] > scores[best.n_components]:
                best = gm
        if best is None:
            raise ValueError(f"need at least 2 encodings to fit a mixture, got {len(x)}")
        mixture = cls(weights=best.weights_.astype(np.float64),
                      means=best.means_.astype(np.float64),
                      covariances=best.covariances_.astype(np.float64), latent=z.shape[1])
        return mixture, scores

    def sample(self, y: np.ndarray, rng: np.random.Generator,
               temperature: float = 1.0, per_row: int = 1) -> np.ndarray:
        """z ~ p(z | y) for each row of the standardised conditions y (n, C); (n, D).

        `temperature` scales the spread of each conditional component about its mean. With
        `per_row` > 1, (n * per_row, D): `per_row` consecutive draws for each row of y, all
        from the component drawn for that row.
        """
        d = self.latent
        y = np.asarray(y, dtype=np.float64).reshape(len(y), self.n_conditions)
        n = len(y)
        mz, my = self.means[:, :d], self.means[:, d:]
        szz = self.covariances[:, :d, :d]
        if self.n_conditions:
            szy, syy = self.covariances[:, :d, d:], self.covariances[:, d:, d:]
            syy_inv = np.linalg.inv(syy)  # (K, C, C), C is 1 or 2
            gain = szy @ syy_inv  # (K, D, C)
            diff = y[:, None, :] - my[None]  # (n, K, C)
            maha = np.einsum("nkc,kcd,nkd->nk", diff, syy_inv, diff)
            logdet = np.linalg.slogdet(syy)[1]
            logw = np.log(self.weights)[None] - 0.5 * (maha + logdet[None])
            cov = szz - gain @ np.transpose(szy, (0, 2, 1))
        else:
            logw = np.repeat(np.log(self.weights)[None], n, axis=0)
            cov = szz
        prob = np.exp(logw - logw.max(1, keepdims=True))
        prob /= prob.sum(1, keepdims=True)
        pick = (prob.cumsum(1) < rng.random((n, 1))).sum(1).clip(max=self.n_components - 1)
        mean = mz[pick]
        if self.n_conditions:
            mean = mean + np.einsum("ndc,nc->nd", gain[pick], y - my[pick])
        pick, mean = np.repeat(pick, per_row), np.repeat(mean, per_row, axis=0)
        chol = np.linalg.cholesky(cov + 1e-9 * np.eye(d))
        normal = rng.standard_normal((n * per_row, d))
        noise = np.empty_like(normal)
        for k in np.unique(pick):  # per component, not an (n, D, D) stack of factors
            rows = pick == k
            noise[rows] = normal[rows] @ chol[k].T
        return (mean + temperature * noise).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        np.savez(path, weights=self.weights, means=self.means, covariances=self.covariances,
                 latent=np.int64(self.latent))
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatentMixture:
        with np.load(path) as data:
            return cls(weights=data["weights"], means=data["means"],
                       covariances=data["covariances"], latent=int(data["latent"]))
