"""Time the batch checks of generated crystals, stage by stage (issue #4's speed targets).

Samples a checkpoint with its shipped sampler, then runs `check_structures` on the samples,
without a reference (as the throughput benchmark does) and with the checkpoint's training
crystals as the novelty reference (as `invdesign sample` does), and reports when each stage
(validity, uniqueness, novelty) started and ended, in seconds from the start of the call.
Repeats alternate the two, so both see the same machine. Runs on any checkout that has
`check_structures(..., progress=...)`, so it can time an older commit in a worktree:

    python scripts/time_checks.py --model vae-mp-binary --n 10000 --jobs 2 --repeat 2
    cd /tmp/old && PYTHONPATH=. python /path/to/scripts/time_checks.py --n 10000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from invdesign.api import Designer, charge_balanced
from invdesign.validity import check_structures


def timed_checks(structures: list, reference: object, jobs: int) -> dict[str, object]:
    """Seconds of one `check_structures` call and (start, end) of each stage."""
    marks: dict[str, list[float]] = {}
    start = time.perf_counter()

    def progress(stage: str, done: int, total: int) -> None:
        now = round(time.perf_counter() - start, 2)
        marks.setdefault(stage, [now, now])[1] = now

    table = check_structures(structures, reference=reference, n_jobs=jobs, progress=progress)
    return {"seconds": round(time.perf_counter() - start, 2), "stages": marks,
            "valid": float(table["valid"].mean()), "unique": float(table["unique"].mean()),
            "novel": None if reference is None else float(table["novel"].mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vae-mp-binary")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    designer = Designer.load(args.model)
    structures = [s for s in designer.generator.sample(args.n, seed=args.seed,
                                                       accept=charge_balanced)[0]
                  if s is not None]
    reference = designer.reference
    runs = []
    for _ in range(args.repeat):
        runs.append({"reference": None, **timed_checks(structures, None, args.jobs)})
        runs.append({"reference": "training crystals",
                     **timed_checks(structures, reference, args.jobs)})
    result = {"model": args.model, "n": args.n, "seed": args.seed, "jobs": args.jobs,
              "runs": runs}
    text = json.dumps(result, indent=1)
    if args.out is not None:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
