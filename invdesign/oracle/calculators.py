"""ASE calculators chosen by name, built once per process, with no downloads.

`get_calculator("chgnet")` wraps the CHGNet weights bundled in the `chgnet` wheel,
`get_calculator("sevenn")` the SevenNet-0 weights bundled in the `sevenn` wheel,
`"sevenn-l3i5"` and `"sevenn-mf-0"` (PBE head) two other bundled SevenNet models, and
`get_calculator("emt")` ASE's effective-medium potential (fast, for tests; only
Al, Cu, Ag, Au, Ni, Pd, Pt, H, C, N, O). The heavy packages are imported only here, on demand.
"""

from __future__ import annotations

import logging
from functools import cache, lru_cache
from typing import Any, Literal, get_args

from ase.calculators.calculator import Calculator

__all__ = ["DEFAULT_CALCULATOR", "CalculatorName", "check_calculator_name", "get_calculator",
           "supported_elements"]

logger = logging.getLogger(__name__)

CalculatorName = Literal["chgnet", "sevenn", "sevenn-l3i5", "sevenn-mf-0", "emt"]
_NAMES: tuple[str, ...] = get_args(CalculatorName)
# The oracle's default: the potential that agrees best with DFT moduli and experimental thermal
# expansion on the developers' data (BENCHMARKS.md, session 10; CHGNet is 2-2.6x faster).
DEFAULT_CALCULATOR: CalculatorName = "sevenn-l3i5"
# SevenNet models bundled in the sevenn wheel (pretrained_potentials/): name -> constructor kw.
_SEVENN_MODELS: dict[str, dict[str, str]] = {
    "sevenn": {"model": "7net-0"},
    "sevenn-l3i5": {"model": "7net-l3i5"},
    "sevenn-mf-0": {"model": "7net-mf-0", "modal": "PBE"},  # the PBE fidelity, as MP's DFT
}

# Highest atomic number each potential was trained on (CHGNet: MPtrj, Z <= 94).
_CHGNET_MAX_Z = 94


def check_calculator_name(name: str) -> None:
    """Raise a ValueError naming the choices when `name` is not a known calculator."""
    if name not in _NAMES:
        raise ValueError(f"unknown calculator {name!r}: choose one of {', '.join(_NAMES)}")


def get_calculator(name: CalculatorName, **kw: Any) -> Calculator:
    """The ASE calculator called `name`, built once per process and keyword set.

    Args:
        name: "chgnet" (bundled CHGNet weights), "sevenn" (bundled SevenNet-0),
            "sevenn-l3i5", "sevenn-mf-0" (other bundled SevenNet models) or "emt".
        **kw: Extra keyword arguments for the calculator's constructor (hashable values),
            e.g. ``model="7net-0"`` for SevenNet. The device is always the CPU unless
            ``device``/``use_device`` is given.

    Returns:
        A shared calculator instance (energies in eV, forces in eV/A, stress in eV/A^3).

    Raises:
        ValueError: Unknown name.
        ImportError: The package behind `name` is not installed (message says which).
    """
    check_calculator_name(name)
    return _build(name, tuple(sorted(kw.items())))


@lru_cache(maxsize=8)
def _build(name: str, items: tuple[tuple[str, Any], ...]) -> Calculator:
    kw = dict(items)
    logger.info("building calculator %s %s", name, kw or "")
    if name == "emt":
        from ase.calculators.emt import EMT

        return EMT(**kw)
    if name == "chgnet":
        return _chgnet(kw)
    return _sevenn(_SEVENN_MODELS[name] | kw)


def _chgnet(kw: dict[str, Any]) -> Calculator:
    try:
        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator
    except ImportError as exc:
        raise ImportError("calculator 'chgnet' needs the chgnet package (pip install chgnet)") \
            from exc
    device = kw.pop("use_device", "cpu")
    model = CHGNet.load(use_device=device, verbose=False)  # bundled weights, no network
    kw.setdefault("on_isolated_atoms", "error")
    return CHGNetCalculator(model=model, use_device=device, **kw)


def _sevenn(kw: dict[str, Any]) -> Calculator:
    try:
        from sevenn.calculator import SevenNetCalculator
    except ImportError as exc:
        raise ImportError("calculator 'sevenn' needs the sevenn package (pip install sevenn)") \
            from exc
    kw.setdefault("device", "cpu")
    return SevenNetCalculator(**kw)


@cache
def supported_elements(name: CalculatorName) -> frozenset[str]:
    """Element symbols the potential `name` was fitted to (cheap for "chgnet" and "emt").

    Args:
        name: Calculator name as for `get_calculator`.

    Returns:
        The set of supported element symbols. For "sevenn" the calculator is built to read it.
    """
    check_calculator_name(name)
    if name == "emt":
        from ase.calculators.emt import parameters

        return frozenset(parameters)
    if name == "chgnet":
        from ase.data import chemical_symbols

        return frozenset(chemical_symbols[1 : _CHGNET_MAX_Z + 1])
    from ase.data import chemical_symbols

    type_map = getattr(get_calculator(name), "type_map", {})
    return frozenset(chemical_symbols[z] for z in type_map)
