"""Additive atomic volumes: a cell volume predicted from composition alone.

V(composition) = sum_i n_i v_i, with one non-negative volume v_i per element fitted by
non-negative least squares on training crystals (a Biltz-style volume increment model). A
generator uses it to set the scale of decoded cells whose lattice head gets the volume wrong.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, Lattice, Structure
from scipy.optimize import nnls

from invdesign.featurize.frames import DecodedCell, scaled_matrices


@dataclass(frozen=True)
class AtomicVolumes:
    """Volume per atom of each element (A^3) in the additive model."""

    volumes: Mapping[str, float]

    @classmethod
    def fit(cls, structures: Iterable[Structure]) -> AtomicVolumes:
        """Non-negative least squares of cell volumes on element counts.

        Raises:
            ValueError: When there are no structures.
        """
        structures = list(structures)
        if not structures:
            raise ValueError("fitting atomic volumes needs at least one structure")
        elements = sorted({e.symbol for s in structures for e in s.composition.elements})
        column = {e: j for j, e in enumerate(elements)}
        counts = np.zeros((len(structures), len(elements)))
        for i, s in enumerate(structures):
            for element, n in s.composition.items():
                counts[i, column[element.symbol]] += n
        volumes = np.array([s.volume for s in structures])
        # relative residuals: weight each crystal by 1 / V so large cells do not dominate
        fitted, _ = nnls(counts / volumes[:, None], np.ones(len(structures)))
        return cls({e: float(v) for e, v in zip(elements, fitted, strict=True)})

    def predict(self, composition: Composition) -> float:
        """Cell volume (A^3) of a composition; NaN when an element has no fitted volume."""
        total = 0.0
        for element, n in composition.items():
            v = self.volumes.get(element.symbol)
            if v is None:
                return math.nan
            total += n * v
        return total if total > 0 else math.nan

    def rescale(self, structures: Sequence[Structure | DecodedCell | None]
                ) -> list[Structure | DecodedCell | None]:
        """Copies scaled (isotropically, fractional coordinates kept) to the predicted volume,
        all in one batch; a structure with an element the model lacks, and None, pass
        unchanged."""
        targets = [math.nan if s is None else self.predict(s.composition) for s in structures]
        scale = [i for i, v in enumerate(targets) if math.isfinite(v)]
        out = list(structures)
        if not scale:
            return out
        matrices = scaled_matrices(np.stack([structures[i].lattice.matrix for i in scale]),
                                   np.array([targets[i] for i in scale]))
        for i, matrix in zip(scale, matrices, strict=True):
            s, lattice = structures[i], Lattice(matrix)
            out[i] = (replace(s, lattice=lattice) if isinstance(s, DecodedCell) else
                      Structure(lattice, s.species, s.frac_coords,
                                site_properties=s.site_properties))
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(sorted(self.volumes.items())), indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> AtomicVolumes:
        return cls({str(k): float(v) for k, v in json.loads(Path(path).read_text()).items()})
