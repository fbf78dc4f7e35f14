"""Descriptor + k-nearest-neighbour regressor: the baseline reported beside the graph network."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


class KNNBaseline:
    """Distance-weighted kNN on standardised descriptors, one regressor per target.

    `k` is picked from `k_grid` by validation MAE when `fit` is given validation data.
    """

    def __init__(self, *, k_grid: Sequence[int] = (1, 3, 5, 7, 10, 15, 20)):
        self.k_grid = tuple(k_grid)
        self.models: list = []
        self.k: list[int] = []

    @staticmethod
    def _fit_one(x: np.ndarray, y: np.ndarray, k: int):
        model = make_pipeline(StandardScaler(),
                              KNeighborsRegressor(n_neighbors=min(k, len(y)), weights="distance"))
        return model.fit(x, y)

    def fit(self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None) -> KNNBaseline:
        """Fit on descriptors x (n, f) and targets y (n, t) with NaN for missing labels."""
        self.models, self.k = [], []
        for j in range(y.shape[1]):
            have = np.isfinite(y[:, j])
            best_k = self.k_grid[len(self.k_grid) // 2]
            if x_val is not None and y_val is not None and np.isfinite(y_val[:, j]).any():
                have_val = np.isfinite(y_val[:, j])
                maes = [np.mean(np.abs(self._fit_one(x[have], y[have, j], k)
                                       .predict(x_val[have_val]) - y_val[have_val, j]))
                        for k in self.k_grid]
                best_k = self.k_grid[int(np.argmin(maes))]
            self.k.append(best_k)
            self.models.append(self._fit_one(x[have], y[have, j], best_k))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions (n, t)."""
        return np.column_stack([m.predict(x) for m in self.models])
