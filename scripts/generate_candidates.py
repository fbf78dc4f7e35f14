"""Batch inverse design from a script: the same as `invdesign generate`.

    python scripts/generate_candidates.py --objective "E * alpha" -n 100 --out candidates/
    python scripts/generate_candidates.py --objective "hardness * toughness" \
        --constraint "K > 50" --elements Al,Si,O,N,C,B,Ti --out hard/
"""

from __future__ import annotations

import argparse

import invdesign


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objective", action="append", help="repeat for a Pareto front")
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--constraint", action="append")
    parser.add_argument("--elements", help="comma-separated allowed elements")
    parser.add_argument("--max-atoms", type=int)
    parser.add_argument("--method", default="both", choices=["cmaes", "gradient", "both"])
    parser.add_argument("--score", default="mean", choices=["mean", "lcb", "ei"])
    parser.add_argument("--budget", type=int, default=3000)
    parser.add_argument("--model", default="mp-binary")
    parser.add_argument("--format", default="cif", choices=["cif", "extxyz", "json"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="candidates")
    args = parser.parse_args()
    best = invdesign.generate(
        args.objective or ["E * alpha"], args.n, out=args.out, model=args.model,
        file_format=args.format, constraints=args.constraint,
        elements=args.elements.split(",") if args.elements else None, max_atoms=args.max_atoms,
        method=args.method, score=args.score, budget=args.budget, seed=args.seed)
    print(best.table.head(20).to_string())
    print(f"{len(best)} candidates written to {args.out}")


if __name__ == "__main__":
    main()
