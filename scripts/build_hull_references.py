"""Relax every element's ground-state prototypes with the oracle's potential and write the
lowest energy per element: the elemental corners of the convex hull that
`invdesign.oracle.stability.Hull` builds (with the oracle label table of the MP binaries as
its compounds). Rows are written as each element finishes; a rerun skips elements already in
the file.

    python scripts/build_hull_references.py --out checkpoints/oracle-labels/elements-chgnet.csv
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

import pandas as pd

from invdesign.oracle.calculators import CalculatorName


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--calculator", default="chgnet", choices=get_args(CalculatorName))
    parser.add_argument("--elements", default="",
                        help="comma-separated symbols (default: every element the potential "
                             "supports)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    import torch

    from invdesign.oracle.calculators import supported_elements
    from invdesign.oracle.stability import elemental_references

    torch.set_num_threads(1)
    from ase.data import atomic_numbers

    elements = ([e.strip() for e in args.elements.split(",") if e.strip()]
                or sorted(supported_elements(args.calculator), key=atomic_numbers.get))
    done = set(pd.read_csv(args.out)["formula"]) if args.out.exists() else set()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for symbol in elements:
        if symbol in done:
            continue
        start = time.perf_counter()
        row = elemental_references([symbol], args.calculator).assign(
            calculator=args.calculator, seconds=round(time.perf_counter() - start, 1))
        row.to_csv(args.out, mode="a", header=not args.out.exists(), index=False)
        print(row.to_string(header=False, index=False), flush=True)


if __name__ == "__main__":
    main()
