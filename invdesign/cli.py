"""Command line: `invdesign generate`, `sample`, `train surrogate|vae`, `predict`, `verify`,
`label`, `validate`, `evaluate generation|reconstruction`, `examples`, `models`.

A thin layer over the Python API: parse options, call the library, print tables.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import numbers
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from invdesign.runtime import keep_freed_memory

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Generative inverse design of materials.")
train_app = typer.Typer(no_args_is_help=True, help="Train models.")
app.add_typer(train_app, name="train")
evaluate_app = typer.Typer(no_args_is_help=True, help="CDVAE-standard generation metrics.")
app.add_typer(evaluate_app, name="evaluate")
console = Console(stderr=True)
# Oracle potentials, as in invdesign.oracle (not imported here: it pulls in ASE): the names, the
# default (most accurate) and the fast one the --relax screen uses.
_POTENTIALS = "chgnet, sevenn, sevenn-l3i5, sevenn-mf-0 or emt"
_DEFAULT_POTENTIAL = "sevenn-l3i5"
_SCREEN_POTENTIAL = "chgnet"


@contextmanager
def training_progress(total: int) -> Iterator[Callable[[int, str], None]]:
    """A `report(done, status)` for training loops: a progress bar on a terminal, otherwise
    (nohup, CI, batch jobs) a plain line about every 5 % of `total` steps, so that a log
    file shows how far a run has got."""
    if console.is_terminal:
        with Progress(*Progress.get_default_columns(), TextColumn("{task.fields[status]}"),
                      console=console) as bar:
            task = bar.add_task("training", total=total, status="")
            yield lambda done, status: bar.update(task, completed=done, status=status)
            bar.update(task, completed=total)
        return
    every, start = max(1, total // 20), time.perf_counter()

    def report(done: int, status: str) -> None:
        if done % every == 0 or done == total:
            console.print(f"training {done}/{total} ({time.perf_counter() - start:.0f} s): "
                          f"{status}", highlight=False, soft_wrap=True)

    yield report


@contextmanager
def stage_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A `report(stage, done, total)` for jobs in stages (denoising, validity, uniqueness,
    novelty): one bar per stage on a terminal, otherwise a line when a stage starts, at
    every further tenth of it and when it ends."""
    if console.is_terminal:
        with Progress(*Progress.get_default_columns(), TimeElapsedColumn(),
                      console=console) as bar:
            tasks: dict[str, int] = {}

            def update(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done, total=total)

            yield update
        return
    start, tenths = time.perf_counter(), {}

    def report(stage: str, done: int, total: int) -> None:
        tenth = 10 * done // max(total, 1)
        if tenths.get(stage, -1) < tenth:
            tenths[stage] = tenth
            console.print(f"{stage} {done}/{total} ({time.perf_counter() - start:.0f} s)",
                          highlight=False)

    yield report


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    keep_freed_memory()
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)])


def _split_names(values: list[str]) -> tuple[str, ...]:
    return tuple(n.strip() for v in values for n in v.split(",") if n.strip())


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code=2)


@train_app.command("surrogate")
def train_surrogate_cmd(
    data: Annotated[Path, typer.Option(help="Dataset file or folder (any format load_dataset "
                                            "reads).")],
    out: Annotated[Path, typer.Option(help="Checkpoint folder to write.")],
    targets: Annotated[list[str], typer.Option(help="Target properties (repeat, or separate "
                                                    "by spaces/commas).")],
    more_targets: Annotated[list[str] | None, typer.Argument(hidden=True)] = None,
    members: Annotated[int, typer.Option(help="Ensemble size.")] = 5,
    epochs: Annotated[int, typer.Option(help="Maximum epochs per member.")] = 120,
    patience: Annotated[int, typer.Option(help="Early-stopping patience (epochs).")] = 40,
    split: Annotated[str, typer.Option(help="random or composition (no reduced formula in two "
                                            "parts).")] = "composition",
    seed: Annotated[int, typer.Option()] = 0,
    workers: Annotated[int, typer.Option(help="Members trained in parallel processes.")] = 2,
    max_atoms: Annotated[int | None, typer.Option(help="Skip larger cells.")] = None,
    init_from: Annotated[str | None, typer.Option(
        help="Checkpoint to initialise from (transfer learning).")] = None,
    freeze_conv: Annotated[bool, typer.Option(
        help="With --init-from: freeze the convolutions, train the heads only.")] = False,
    cv: Annotated[int, typer.Option(help="Also run k-fold cross-validation (0: off).")] = 0,
    angular: Annotated[int, typer.Option(
        help="Bond-angle descriptor per edge: Gaussians on cos(angle) to the centre's other "
             "bonds (0: distances only, as the shipped checkpoint).")] = 0,
    cache: Annotated[Path | None, typer.Option(help="Graph cache folder.")] = None,
    labels: Annotated[Path | None, typer.Option(
        help="Oracle label table (from `invdesign label`) joined by id: its ok rows give the "
             "target thermal_expansion_oracle (alpha_300K).")] = None,
) -> None:
    """Train a CGCNN ensemble; writes weights, card.json and learning_curve.png to OUT."""
    from invdesign.data import read_labels
    from invdesign.featurize.graph import GraphConfig
    from invdesign.oracle import LABEL_PROPERTIES
    from invdesign.surrogate import Surrogate
    from invdesign.train.pipeline import SurrogateRunConfig, save_run, train_surrogate
    from invdesign.train.surrogate import TrainConfig

    names = _split_names(targets + list(more_targets or []))
    if split not in ("random", "composition"):
        _fail(f"--split must be 'random' or 'composition', got {split!r}")
    if freeze_conv and not init_from:
        _fail("--freeze-conv needs --init-from")
    try:
        graph = GraphConfig(angular=angular)
    except ValueError as err:
        _fail(f"--angular {angular}: {err}")
    config = SurrogateRunConfig(
        targets=names, split=split, seed=seed, n_members=members, workers=workers,
        max_atoms=max_atoms, graph=graph,
        train=TrainConfig(epochs=epochs, patience=patience, seed=seed,
                          freeze_convolutions=freeze_conv))
    try:
        init = Surrogate.load(init_from) if init_from else None
        table = None if labels is None else read_labels(
            labels, LABEL_PROPERTIES, positive=tuple(LABEL_PROPERTIES.values()))
        with training_progress(members * epochs) as report:
            done = itertools.count(1)

            def on_epoch(seed_: int, epoch: int, loss: float, val_mae: float) -> None:
                report(next(done), f"member {seed_ - seed} epoch {epoch} val {val_mae:.4f}")

            run = train_surrogate(data, config, init_from=init, labels=table, cache_dir=cache,
                                  on_epoch=on_epoch, cv_folds=cv)
    except (FileNotFoundError, ValueError) as err:
        _fail(str(err))
    save_run(run, out)
    result = run.metrics
    table = Table(title=f"held-out test ({result['test']['n']} structures)")
    for col in ("target", "ensemble MAE", "kNN MAE", "Spearman(std, |err|)"):
        table.add_column(col)
    for name in names:
        m = result["test"][name]
        table.add_row(name, f"{m['mae']:.4f}", f"{result['knn_baseline_test_mae'][name]:.4f}",
                      f"{m['spearman_std_vs_abs_error']:.2f}")
    Console().print(table)
    typer.echo(json.dumps({"out": str(out), "test_mae": {n: result["test"][n]["mae"]
                                                          for n in names}}))


@train_app.command("vae")
def train_vae_cmd(
    data: Annotated[Path, typer.Option(help="Dataset file or folder (any format load_dataset "
                                            "reads).")],
    out: Annotated[Path, typer.Option(help="Checkpoint folder to write.")],
    conditions: Annotated[list[str] | None, typer.Option(
        help="Properties to condition on (repeat, or separate by commas).")] = None,
    more_conditions: Annotated[list[str] | None, typer.Argument(hidden=True)] = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 300,
    patience: Annotated[int, typer.Option(help="Early-stopping patience (epochs).")] = 60,
    split: Annotated[str, typer.Option(help="random or composition.")] = "random",
    seed: Annotated[int, typer.Option()] = 0,
    max_atoms: Annotated[int | None, typer.Option(help="Skip larger cells.")] = None,
    latent: Annotated[int, typer.Option(help="Latent dimension.")] = 64,
    beta: Annotated[float, typer.Option(help="KL weight after warm-up.")] = 0.01,
    surrogate: Annotated[str | None, typer.Option(
        help="Surrogate that scores this generator's candidates by default (recorded in the "
             "card), e.g. surrogate-elastic.")] = None,
    cache: Annotated[Path | None, typer.Option(help="Graph cache folder.")] = None,
    pressure: Annotated[float, typer.Option(
        help="Pressure (GPa) at which the data's crystals were relaxed (10 for Carbon-24); "
             "recorded in the card as the default of `sample --relax`.")] = 0.0,
) -> None:
    """Train a property-conditioned crystal VAE; writes the checkpoint, the training structures
    (for novelty checks) and learning_curve.png to OUT, and prints held-out reconstruction."""
    from invdesign.train.vae import VAETrainConfig
    from invdesign.train.vae_pipeline import (
        VAEArchitecture,
        VAERunConfig,
        evaluate_reconstruction,
        save_vae_run,
        train_generator,
    )

    names = _split_names(list(conditions or []) + list(more_conditions or []))
    if split not in ("random", "composition"):
        _fail(f"--split must be 'random' or 'composition', got {split!r}")
    config = VAERunConfig(conditions=names, split=split, seed=seed, max_atoms=max_atoms,
                          pressure=pressure, architecture=VAEArchitecture(latent=latent),
                          train=VAETrainConfig(epochs=epochs, patience=patience, seed=seed,
                                               beta=beta))
    try:
        with training_progress(epochs) as report:

            def on_epoch(epoch: int, history) -> None:
                report(epoch + 1, f"val loss {history.val_loss[-1]:.3f} composition "
                                  f"{history.val_composition_accuracy[-1]:.1%}")

            run = train_generator(data, config, cache_dir=cache, on_epoch=on_epoch)
    except (FileNotFoundError, ValueError, KeyError) as err:
        _fail(str(err))
    metrics = evaluate_reconstruction(run.generator, run.test_structures())
    extra = {"metrics": {"test_reconstruction": metrics}}
    if surrogate:
        extra["surrogate"] = surrogate
    save_vae_run(run, out, extra)
    typer.echo(json.dumps({"out": str(out), **metrics}))


@train_app.command("denoiser")
def train_denoiser_cmd(
    model: Annotated[str, typer.Option(help="VAE checkpoint folder to add the denoiser to.")],
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 200,
    patience: Annotated[int, typer.Option(help="Early-stopping patience (epochs).")] = 20,
    sigma_start: Annotated[float, typer.Option(
        help="Noise level (A) that sampling starts refining from.")] = 0.3,
    steps: Annotated[int, typer.Option(help="Refinement steps when sampling.")] = 20,
    passes: Annotated[int, typer.Option(
        help="Times sampling walks the whole noise ladder, each from the last result.")] = 1,
    noise: Annotated[bool, typer.Option(
        help="Add fresh noise of scale sigma-start before refining (more diverse).")] = False,
    solver: Annotated[str, typer.Option(
        help="Refinement steps: 'euler', or 'multistep' (second order: about half the steps "
             "for the same accuracy).")] = "euler",
    start: Annotated[str, typer.Option(
        help="Where sampling starts: 'decoded' positions, or 'random' ones in the decoded "
             "cell (needs --sigma-max of about half the longest cell edge).")] = "decoded",
    sigma_max: Annotated[float, typer.Option(
        help="Largest training noise level (A).")] = 1.0,
    data: Annotated[Path | None, typer.Option(
        help="The checkpoint's training file, if it has moved.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    resume: Annotated[bool, typer.Option(
        help="Continue training the checkpoint's denoiser instead of starting afresh.")] = False,
    angular: Annotated[int, typer.Option(
        help="Bond-angle bins per edge (0: distances only); with --resume they are added to "
             "a denoiser that has none.")] = 0,
    lattice_noise: Annotated[float, typer.Option(
        help="Cell strain noise (std at --sigma-max) the denoiser learns to undo, so sampling "
             "refines the decoded cell as well as the coordinates (0: cell kept); with "
             "--resume it is added to a denoiser that has none.")] = 0.0,
) -> None:
    """Train a coordinate denoiser on a VAE checkpoint's training split and store it in the
    checkpoint: sampling and decoding then refine decoded coordinates with it."""
    from invdesign.generator import Generator
    from invdesign.models.denoiser import DenoiserConfig
    from invdesign.surrogate import resolve_checkpoint
    from invdesign.train.denoiser import DenoiserTrainConfig
    from invdesign.train.vae_pipeline import train_checkpoint_denoiser

    try:
        generator = Generator.load(model)
        config = DenoiserConfig(refine_sigma=sigma_start, refine_steps=steps,
                                refine_passes=passes, refine_noise=noise, refine_start=start,
                                refine_solver=solver,
                                sigma_max=sigma_max, n_angular=angular,
                                lattice_noise=lattice_noise)
        with training_progress(epochs) as report:

            def on_epoch(epoch: int, history) -> None:
                report(epoch + 1, f"val loss {history.val_loss[-1]:.4f}")

            train_checkpoint_denoiser(generator, data, config=config, train_config=(
                DenoiserTrainConfig(epochs=epochs, patience=patience, seed=seed)),
                on_epoch=on_epoch, resume=resume)
    except (FileNotFoundError, ValueError, KeyError) as err:
        _fail(str(err))
    folder = generator.save(resolve_checkpoint(model), weights=False)
    typer.echo(json.dumps({"out": str(folder), **generator.meta["denoiser"]}))


def _parse_condition(text: str) -> tuple[str, float | tuple[float, float]]:
    """`NAME=VALUE` or `NAME=LO:HI` (a target range)."""
    name, sep, value = text.partition("=")
    try:
        if not sep or not name.strip():
            raise ValueError
        if ":" in value:
            lo, hi = (float(v) for v in value.split(":"))
            return name.strip(), (lo, hi)
        return name.strip(), float(value)
    except ValueError:
        _fail(f"--condition {text!r}: expected NAME=VALUE or NAME=LO:HI, e.g. "
              "bulk_modulus_vrh=250 or K=100:200")
        raise


@app.command()
def sample(
    out: Annotated[Path, typer.Option(
        help="Folder for candidates.csv and cifs/. The drawn samples wait in OUT/samples.npz "
             "until their checks are done, so rerunning an interrupted command resumes "
             "there.")],
    model: Annotated[str, typer.Option(help="VAE checkpoint folder or shipped name.")] =
        "vae-mp-binary",
    n: Annotated[int, typer.Option("-n", "--n", help="Number of samples.")] = 100,
    condition: Annotated[list[str] | None, typer.Option(
        help="NAME=VALUE or NAME=LO:HI in physical units (repeat).")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    temperature: Annotated[float, typer.Option(help="Scale of the latent noise.")] = 1.0,
    surrogate: Annotated[str | None, typer.Option(
        help="Also predict properties with this surrogate checkpoint.")] = None,
    files: Annotated[bool, typer.Option(help="Write one CIF per candidate.")] = True,
    prior: Annotated[str, typer.Option(
        help="Latent prior: auto (the fitted mixture when the checkpoint has one), fitted or "
             "gaussian.")] = "auto",
    jobs: Annotated[int, typer.Option(
        help="Processes for denoising, checks and CIF files of large batches.")] = 2,
    screen: Annotated[int, typer.Option(
        help="With conditions: latent draws per sample, keeping those the VAE's property "
             "head predicts closest to the request (1: no screening).")] = 8,
    denoise: Annotated[bool | None, typer.Option(
        "--denoise/--no-denoise",
        help="Refine decoded coordinates with the checkpoint's denoiser (default: when it "
             "has one).")] = None,
    refine_passes: Annotated[int | None, typer.Option(
        help="Passes down the denoiser's noise ladder (default: the checkpoint's, 12 for "
             "vae-carbon24): fewer passes refine faster but cover the data less well.")]
        = None,
    refine_cell: Annotated[bool | None, typer.Option(
        "--refine-cell/--keep-cell",
        help="Let the denoiser refine the decoded cell too, or keep it (default: the "
             "checkpoint's; vae-mp-binary and vae-carbon24 refine it). Kept cells give more "
             "novel but less typical crystals.")] = None,
    charge_balance: Annotated[bool, typer.Option(
        help="Replace a decoded composition that fails SMACT charge balance by the decoder's "
             "most probable one that passes (--no-charge-balance: the raw decoder).")] = True,
    stoichiometry: Annotated[bool | None, typer.Option(
        "--known-stoichiometry/--any-stoichiometry",
        help="Keep decoded compositions to the kinds of formula the training crystals have "
             "(reduced amounts in electronegativity order: BaTiO3 and SrZrO3 are one kind, "
             "RhO3F another), taking the decoder's most probable one that is (default: where "
             "the checkpoint records them; vae-perov5 does).")] = None,
    best_of: Annotated[int | None, typer.Option(
        help="Latent codes drawn per sample (same condition and mixture component); the one "
             "whose decoded crystal encodes back closest to its code is kept, which turns "
             "away blends of training crystals (default: the checkpoint's; 2 for vae-perov5, "
             "1 elsewhere).")] = None,
    relax: Annotated[bool, typer.Option(
        help="Relax every decoded sample (cell and ions) with --relax-calculator in --jobs "
             "processes, then check and predict the relaxed crystals; relaxations stream to "
             "OUT/relaxations.csv (a rerun resumes). About 1-30 s per sample and process.")]
        = False,
    relax_calculator: Annotated[str, typer.Option(
        help=f"Potential of --relax: {_POTENTIALS}.")] = _SCREEN_POTENTIAL,
    pressure: Annotated[float | None, typer.Option(
        help="External pressure of --relax, GPa (default: the pressure the checkpoint's "
             "training crystals were relaxed at, from its card: 10 for vae-carbon24, "
             "else 0).")] = None,
) -> None:
    """Sample crystals (optionally conditioned); validity, uniqueness, novelty per candidate."""
    from invdesign import __version__
    from invdesign.api import Designer
    from invdesign.design.saved_samples import (
        SAMPLES_FILE,
        checkpoint_fingerprint,
        clear_samples,
        load_samples,
        save_samples,
    )
    from invdesign.screening import relax_candidates

    conditions = dict(_parse_condition(c) for c in condition or [])
    try:
        designer = Designer.load(model, surrogate=surrogate)
        options = {"seed": seed, "temperature": temperature, "prior": prior, "screen": screen,
                   "denoise": denoise, "refine_passes": refine_passes,
                   "refine_cell": refine_cell, "charge_balance": charge_balance,
                   "stoichiometry": stoichiometry, "best_of": best_of}
        key = {"model": str(model), "version": __version__, "n": n,
               "checkpoint": checkpoint_fingerprint(designer.checkpoint),
               "conditions": {k: list(v) if isinstance(v, tuple) else v
                              for k, v in conditions.items()}, **options}
        with stage_progress() as report:
            saved = load_samples(out, key)
            if saved is None:
                structures, requested = designer.draw(n, conditions=conditions or None,
                                                      progress=report, n_jobs=jobs, **options)
                save_samples(out, key, structures, requested)
            else:
                structures, requested = saved
                console.print(f"resuming: the {n} samples an interrupted run saved in "
                              f"{out / SAMPLES_FILE}")
            try:
                cands = designer.assess_samples(structures, requested, n_jobs=jobs,
                                                progress=report)
            except KeyboardInterrupt:
                console.print(f"interrupted: the samples are saved in {out / SAMPLES_FILE}; "
                              "the same command resumes from them")
                raise typer.Exit(130) from None
        if relax:
            if pressure is None:
                pressure = designer.generator.data_pressure
            cands = relax_candidates(designer, cands, calculator=relax_calculator, workers=jobs,
                                     pressure=pressure, cache=out / "relaxations.csv",
                                     n_jobs=jobs)
    except (FileNotFoundError, ValueError, KeyError) as err:
        _fail(str(err))
    if files:
        cands.write(out, n_jobs=jobs)
    else:
        out.mkdir(parents=True, exist_ok=True)
        cands.to_csv(out / "candidates.csv")
    clear_samples(out)  # the results hold them now
    _print_summary(cands.table, out)


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Folder for candidates.csv, structures, ashby.png.")]
        = Path("candidates"),
    objective: Annotated[list[str] | None, typer.Option(
        help="Expression to maximise, e.g. 'E * alpha' (repeat for a Pareto front).")] = None,
    n: Annotated[int, typer.Option("-n", "--n", help="Candidates to return.")] = 100,
    constraint: Annotated[list[str] | None, typer.Option(
        help="e.g. 'K > 50' (repeat).")] = None,
    elements: Annotated[str | None, typer.Option(
        help="Allowed elements, comma-separated (default: all the generator knows).")] = None,
    max_atoms: Annotated[int | None, typer.Option(help="At most this many atoms per cell.")] =
        None,
    method: Annotated[str, typer.Option(help="cmaes, gradient or both.")] = "both",
    score: Annotated[str, typer.Option(help="mean, lcb (mean - kappa std) or ei.")] = "mean",
    kappa: Annotated[float, typer.Option(help="Weight of the ensemble std in lcb.")] = 1.0,
    budget: Annotated[int, typer.Option(help="Latent points decoded and scored.")] = 3000,
    minimize: Annotated[bool, typer.Option(help="Minimise instead of maximise.")] = False,
    model: Annotated[str, typer.Option(help="Generator checkpoint or shipped name.")] =
        "mp-binary",
    surrogate: Annotated[str, typer.Option(help="Scoring surrogate ('auto': the generator's).")]
        = "auto",
    file_format: Annotated[str, typer.Option("--format", help="cif, extxyz or json.")] = "cif",
    seed: Annotated[int, typer.Option()] = 0,
    verify: Annotated[int, typer.Option(
        help="Check the top N with the oracle (--calculator: relaxation, moduli, thermal "
             "expansion, energy above the hull; seconds to minutes each): OUT/verified.csv, "
             "verified.calibrated.csv and the relaxed structures in verified_relaxed/.")]
        = 0,
    relax: Annotated[bool, typer.Option(
        help="Physics screen before writing: relax every candidate with --relax-calculator, "
             "re-check validity, uniqueness and novelty, place it against the "
             "potential's convex hull (e_above_hull), re-score the relaxed crystal and rank "
             "those that pass (within 0.1 eV/atom of the hull) first; writes the relaxed "
             "structures. About 1-10 s per candidate and worker.")] = False,
    workers: Annotated[int, typer.Option(help="Oracle worker processes for --relax and "
                                         "--verify.")] = 1,
    calculator: Annotated[str, typer.Option(help="Oracle potential for --verify: "
                                            f"{_POTENTIALS}.")] = _DEFAULT_POTENTIAL,
    relax_calculator: Annotated[str, typer.Option(
        help="Potential of the --relax screen (CHGNet: 2-2.6x faster than the default oracle, "
             "and the hull with the most labelled binaries).")] = _SCREEN_POTENTIAL,
    refine_cell: Annotated[bool | None, typer.Option(
        "--refine-cell/--keep-cell",
        help="Let the denoiser refine the shortlist's decoded cells too, or keep them "
             "(default: the checkpoint's). Kept cells give more novel but less typical "
             "crystals.")] = None,
) -> None:
    """Find valid, unique, novel crystals that maximise an objective (shipped models)."""
    from invdesign.api import generate as run_generate

    if file_format not in ("cif", "extxyz", "json"):
        _fail(f"--format must be cif, extxyz or json, got {file_format!r}")
    refine = None
    if relax:
        refine = _physics_screen(objective or ["E * alpha"], constraint, score, kappa, minimize,
                                 relax_calculator, workers, out / "relaxations.csv")
    try:
        best = run_generate(objective or ["E * alpha"], n, out=out, model=model,
                            surrogate=surrogate, file_format=file_format, refine=refine,
                            constraints=constraint,
                            elements=[e.strip() for e in elements.split(",") if e.strip()]
                            if elements else None,
                            max_atoms=max_atoms, method=method, score=score, kappa=kappa,
                            budget=budget, seed=seed, minimize=minimize,
                            refine_cell=refine_cell)
    except (FileNotFoundError, ValueError, KeyError) as err:
        _fail(str(err))
    Console().print(_top_table(best.table, out))
    if verify > 0 and len(best):
        _verify_top(best, verify, out / "verified.csv", workers, calculator)


def _top_table(table, out: Path) -> Table:
    """The top 10 rows of a ranked candidates table for the terminal (fits 80 columns; after
    the physics screen the ids give way to its columns, they stay in the CSV)."""
    relaxed = "passed" in table
    show = ["rank", "id", "formula", "objective", "objective_std", "bulk_modulus_vrh",
            "shear_modulus_vrh", "thermal_expansion", "e_above_hull", "passed"]
    show = [c for c in show if c in table and not (c == "id" and relaxed)]
    title = (f"top of {len(table)} relaxed candidates, {int(table['passed'].sum())} passed "
             f"the physics screen (ranked first) -> {out}" if relaxed else
             f"top of {len(table)} valid, unique, novel candidates -> {out}")
    preview = Table(title=title)
    for col in show:
        preview.add_column(_HEADERS.get(col, (col,))[0], no_wrap=True,
                           justify="left" if col in ("id", "formula") else "right")
    for _, row in table.head(10).iterrows():
        preview.add_row(*[_cell(row[c], *_HEADERS.get(c, (c, 1.0, ".4g"))[1:]) for c in show])
    return preview


# column -> (terminal header, scale, format): a top-10 table that fits 80 columns
_HEADERS = {"rank": ("#", 1.0, "d"), "objective": ("objective", 1.0, ".3g"),
            "objective_std": ("± std", 1.0, ".2g"),
            "bulk_modulus_vrh": ("K GPa", 1.0, ".0f"), "shear_modulus_vrh": ("G GPa", 1.0, ".0f"),
            "thermal_expansion": ("α ppm/K", 1e6, ".1f"),
            "e_above_hull": ("hull eV", 1.0, ".3f"), "passed": ("ok", 1.0, "")}


def _cell(value, scale: float = 1.0, spec: str = ".4g") -> str:
    """A table cell: numbers scaled and formatted, everything else as text."""
    if isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b":
        return "yes" if value else "no"  # numpy bools too, without importing numpy here
    if not isinstance(value, numbers.Real):
        return str(value)
    if not math.isfinite(value):
        return "-"
    return format(int(value) if spec == "d" else float(value) * scale, spec)


def _physics_screen(objectives: list[str], constraints: list[str] | None, score: str,
                    kappa: float, minimize: bool, calculator: str, workers: int, cache: Path):
    """The `refine` step of `generate --relax`: `invdesign.screening.screen` with the search's
    first objective (with several, the screened candidates are ranked by the first, not by
    Pareto front) and the shipped hull of `calculator` (none for EMT: stability unchecked),
    relaxations streamed to `cache` so that a rerun after an interruption resumes."""
    from invdesign.design.scoring import Scorer
    from invdesign.screening import screen

    scorer = Scorer.parse(objectives[0], constraints, mode=score, kappa=kappa,  # type: ignore[arg-type]
                          minimize=minimize)
    hull = _shipped_hull(calculator)
    if hull is None:
        console.print(f"[yellow]warning:[/] no convex hull ships for {calculator}: "
                      "stability is not checked")

    def refine(designer, best):
        return screen(designer, best, scorer, hull, calculator=calculator, workers=workers,
                      cache=cache)

    return refine


def _verify_top(best, n: int, results: Path, workers: int, calculator: str = _DEFAULT_POTENTIAL
                ) -> None:
    """The oracle on the first n ranked candidates (`Candidates`), with K, G and E also on
    the DFT scale where a calibration ships for the calculator."""
    import torch

    from invdesign.oracle import run_many

    torch.set_num_threads(1)
    top = best[:n]
    try:
        table = run_many(list(zip(top.table["id"], top.structures, strict=True)), results,
                         calculator=calculator, workers=workers,  # type: ignore[arg-type]
                         structures_dir=_relaxed_dir(results))
    except (ValueError, ImportError) as err:
        _fail(str(err))
    _print_status(table, results)
    derived = _write_derived(results, calculator, _shipped_calibration(calculator))
    table = derived if derived is not None else table
    _print_comparison(top.table, table)


def _print_comparison(predicted, oracle) -> None:
    """Surrogate vs oracle K, G (GPa) and alpha (1e-6/K) of each verified candidate, calibrated
    where available (none shown where the oracle failed, e.g. mechanically unstable), and the
    energy above the oracle's hull wherever the relaxation converged."""
    shared = (set(predicted.columns) & set(oracle.columns)) - {"id", "formula"}
    merged = predicted.drop(columns=sorted(shared)).merge(  # the oracle's values win
        oracle.drop(columns=["formula"], errors="ignore"), on="id")
    view = Table(title="surrogate vs oracle (K, G in GPa; alpha in 1e-6/K; energy above the "
                       "oracle's hull in eV/atom)")
    for col in ("rank", "formula", "status", "K surrogate", "K oracle", "G surrogate",
                "G oracle", "alpha surrogate", "alpha oracle", "E hull"):
        view.add_column(col)
    for _, row in merged.iterrows():
        cells = [str(row.get("rank", "")), str(row.get("formula", "")),
                 str(row["status"]).split(" (")[0]]
        for name, column, scale, spec in (("bulk_modulus_vrh", "K_vrh", 1.0, ".0f"),
                                          ("shear_modulus_vrh", "G_vrh", 1.0, ".0f"),
                                          ("thermal_expansion", "alpha_300K", 1e6, ".1f")):
            oracle_value = row.get(f"{column}_calibrated", row.get(column, float("nan")))
            cells += [format(scale * row.get(name, float("nan")), spec),
                      format(scale * oracle_value, spec) if row["status"] == "ok" else "-"]
        e_hull = float(row.get("e_above_hull", float("nan")))
        view.add_row(*cells, "-" if math.isnan(e_hull) else f"{e_hull:+.2f}")
    Console().print(view)


def _print_status(table, out: Path) -> None:
    status = table["status"].astype(str).str.replace(r"\s*\(.*", "", regex=True).value_counts()
    summary = Table(title=f"{len(table)} structures -> {out}")
    summary.add_column("status")
    summary.add_column("count")
    for name, count in status.items():
        summary.add_row(str(name), str(count))
    Console().print(summary)


def _relaxed_dir(results: Path) -> Path:
    """Folder for the oracle's relaxed structures beside a results CSV (`verified.csv` ->
    `verified_relaxed/`)."""
    return results.parent / f"{results.stem}_relaxed"


@lru_cache(maxsize=4)
def _shipped_hull(calculator: str):
    """The convex hull of the shipped references for `calculator` (elemental ground states
    and the MP-binary label table in `checkpoints/oracle-labels/`), or None; built once per
    process (`generate --relax --verify` asks twice when both stages use one potential)."""
    from invdesign.oracle.stability import hull_from_folder
    from invdesign.surrogate import checkpoints_dir

    return hull_from_folder(checkpoints_dir() / "oracle-labels", calculator)


def _shipped_calibration(calculator: str) -> Path | None:
    from invdesign.surrogate import checkpoints_dir

    shipped = checkpoints_dir() / "oracle-calibration" / f"{calculator}.json"
    return shipped if shipped.exists() else None


def _print_summary(table, out: Path) -> None:
    summary = Table(title=f"{len(table)} candidates -> {out}")
    for col in ("decoded", "valid", "unique", "novel", "valid+unique+novel"):
        summary.add_column(col)
    decoded = table["decoded"].astype(bool)
    vun = table["valid"] & table["unique"] & table["novel"].fillna(False).astype(bool)
    rates = [decoded, table["valid"], table["unique"], table["novel"].fillna(False).astype(bool),
             vun]
    if "relax_status" in table:
        summary.add_column("relaxed")
        rates.append(table["relax_status"].eq("ok"))
    summary.add_row(*[f"{x.mean():.1%}" for x in rates])
    Console().print(summary)


def _load_or_fail(path: Path, **kwargs):
    from invdesign.data import load_dataset

    try:
        dataset = load_dataset(path, properties=[], **kwargs)
    except (FileNotFoundError, ValueError) as err:
        _fail(str(err))
    if dataset.summary.skipped:
        console.print(str(dataset.summary))
    return dataset


@app.command()
def predict(
    data: Annotated[Path, typer.Option(help="Structures: any file load_dataset reads.")],
    out: Annotated[Path, typer.Option(help="CSV to write.")],
    model: Annotated[str, typer.Option(help="Checkpoint folder or shipped name.")] =
        "surrogate-elastic",
    temperature: Annotated[float, typer.Option(help="T for thermal expansion (K).")] = 300.0,
) -> None:
    """Predict properties (with ensemble std) and derived properties for every structure."""
    from invdesign.surrogate import Surrogate

    try:
        surrogate = Surrogate.load(model)
    except (FileNotFoundError, ValueError) as err:
        _fail(str(err))
    dataset = _load_or_fail(data)
    if not len(dataset):
        _fail(f"{data}: no usable structures")
    table = surrogate.predict(dataset.structures, dataset.ids, temperature=temperature,
                              domain=True)
    table.insert(1, "formula", [s.composition.reduced_formula for s in dataset.structures])
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    preview = Table(title=f"{len(table)} predictions -> {out}")
    cols = ["id", "formula", *surrogate.targets][:5]
    if "in_domain" in table:
        cols.append("in_domain")
    for col in cols:
        preview.add_column(col)
    for _, row in table.head(10).iterrows():
        preview.add_row(*[f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c])
                          for c in cols])
    console = Console()
    console.print(preview)
    if "in_domain" not in table:
        console.print(f"{model}: its card records no training domain, so extrapolations are "
                      "not flagged")
    elif not table["in_domain"].all():
        outside = table.loc[~table["in_domain"].astype(bool)]
        console.print(f"[yellow]{len(outside)} of {len(table)} structures lie outside the "
                      f"surrogate's training domain (first: {outside['id'].iloc[0]}, "
                      f"{outside['domain_note'].iloc[0]}); their predictions are "
                      "extrapolations: see the in_domain and domain_note columns.[/yellow]")


def oracle_command(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--candidates", "--data", help="Structures: a "
                                       "candidates.csv with CIFs or any load_dataset format.")],
    out: Annotated[Path, typer.Option(help="Results CSV (appended to; reruns resume).")],
    workers: Annotated[int, typer.Option(help="Local worker processes.")] = 1,
    calculator: Annotated[str, typer.Option(help=f"{_POTENTIALS}.")] = _DEFAULT_POTENTIAL,
    ray_address: Annotated[str | None, typer.Option(help="Run on this Ray cluster.")] = None,
    temperature: Annotated[float, typer.Option(help="T for thermal expansion (K).")] = 300.0,
    max_atoms: Annotated[int | None, typer.Option(help="Skip larger cells.")] = None,
    thermal: Annotated[bool, typer.Option(
        help="Thermal-expansion stage (--no-thermal: relaxation and moduli only, about half "
             "the time).")] = True,
    thermal_method: Annotated[str, typer.Option(
        help="Thermal expansion by 'agl' (Debye-Grueneisen on the E(V) curve) or "
             "'phonon-qha' (phonopy finite displacements at 7 volumes: every mode counts, "
             "so negative-Grueneisen crystals such as Si come out right; tens of times "
             "slower).")] = "agl",
    calibration: Annotated[Path | None, typer.Option(
        help="Oracle -> DFT calibration JSON: K, G and E on the DFT (PBE) scale, and alpha "
             "from their Poisson ratio, go to OUT with the suffix .calibrated.csv (verify: "
             "the shipped one for the calculator by default).")] = None,
) -> None:
    """Relax, elastic moduli and thermal expansion of each structure with the physics oracle."""
    import torch

    from invdesign.oracle import OracleConfig, run_many

    dataset = _load_or_fail(data, max_atoms=max_atoms)
    torch.set_num_threads(1)
    try:
        table = run_many([(r.id, r.structure) for r in dataset], out, calculator=calculator,
                         workers=workers, temperature=temperature, ray_address=ray_address,
                         config=OracleConfig(thermal=thermal,
                                             thermal_method=thermal_method),  # type: ignore[arg-type]
                         structures_dir=_relaxed_dir(out) if ctx.info_name == "verify" else None)
    except (ValueError, ImportError) as err:
        _fail(str(err))
    _print_status(table, out)
    verify = ctx.info_name == "verify"
    if calibration is None and verify:
        calibration = _shipped_calibration(calculator)
    _write_derived(out, calculator, calibration, temperature, hull=verify)


def _write_derived(results: Path, calculator: str, calibration: Path | None,
                   temperature: float = 300.0, *, hull: bool = True):
    """Oracle results with K, G and E mapped to the DFT scale and alpha recomputed with the
    calibrated Poisson ratio (when a calibration is given), and the energy above the shipped
    hull of the calculator (when `hull` and one ships), written next to `results` as
    `.calibrated.csv` and returned; None when there is neither."""
    from invdesign.oracle import read_results
    from invdesign.oracle.calibration import Calibration, calibrated_results
    from invdesign.oracle.stability import STABLE_E_HULL

    table, notes = read_results(results), []
    if calibration is not None:
        try:
            fitted = Calibration.load(calibration)
            table = calibrated_results(table, fitted, temperature=temperature)
        except (OSError, ValueError, KeyError) as err:
            _fail(f"{calibration}: {err}")
        if fitted.calculator and fitted.calculator != calculator:
            console.print(f"[yellow]warning:[/] {calibration.name} was fitted to "
                          f"{fitted.calculator} results, these come from {calculator}")
        notes.append(f"K, G, E and alpha calibrated to DFT ({calibration.name}: "
                     f"{fitted.fit_split})")
    reference = _shipped_hull(calculator) if hull else None
    if reference is not None:
        table = reference.annotate(table)
        notes.append(f"energy above the {calculator} hull of {len(reference)} references "
                     f"(e_above_hull, eV/atom; > {STABLE_E_HULL} would decompose)")
    if not notes:
        return None
    target = results.with_suffix(".calibrated.csv")
    table.to_csv(target, index=False)
    typer.echo("; ".join(notes) + f" -> {target}")
    return table


app.command("verify", help="Verify candidates with the physics oracle (SevenNet-l3i5 by "
            "default; --calculator chgnet is about 2x faster): relaxation, elastic moduli, "
            "thermal expansion; for potentials with a shipped calibration (sevenn-l3i5, "
            "chgnet) also K, G, E and alpha calibrated to DFT and the energy above that "
            "potential's hull of known binaries (OUT.calibrated.csv); relaxed structures in "
            "OUT_relaxed/. Use --candidates FILE.")(oracle_command)
app.command("label", help="Label a training set with oracle K, G, alpha and Debye temperature "
            "(id -> values). Use --data FILE.")(oracle_command)


@app.command()
def validate(
    data: Annotated[Path, typer.Option(help="Structures to check (any load_dataset format).")],
    out: Annotated[Path, typer.Option(help="CSV with one row of flags per structure.")],
    reference: Annotated[Path | None, typer.Option(
        help="Training set for novelty (any load_dataset format).")] = None,
) -> None:
    """Validity (SMACT composition, geometry), uniqueness and novelty of each structure."""
    import pandas as pd

    from invdesign.validity import check_structures, validity_rates

    dataset = _load_or_fail(data)
    ref = _load_or_fail(reference).structures if reference else None
    with stage_progress() as report:
        table = check_structures(dataset.structures, reference=ref, progress=report)
    table.insert(0, "id", dataset.ids)
    # Rows the loader rejected (unparsable, atoms < 0.5 A apart, ...) are invalid samples too.
    rejected = pd.DataFrame({"id": [row for row, _ in dataset.summary.skipped],
                             "reason": [why for _, why in dataset.summary.skipped]})
    for col in ("struct_valid", "comp_valid", "valid", "unique", "novel", "struct_valid_cdvae"):
        if col in table.columns and (col != "novel" or ref is not None):
            rejected[col] = False
    table = pd.concat([table, rejected], ignore_index=True) if len(rejected) else table
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    typer.echo(json.dumps(validity_rates(table)))


@evaluate_app.command("generation")
def evaluate_generation(
    samples: Annotated[Path, typer.Option(help="Generated structures (folder of CIFs, "
                                               "candidates.csv or any load_dataset format).")],
    reference: Annotated[Path, typer.Option(help="Held-out reference structures.")],
    dataset: Annotated[str, typer.Option(help="perov_5, carbon_24 or mp_20 (COV cutoffs).")],
) -> None:
    """COV-R/P, EMD of density and of #elements, validity: one JSON object on the last line."""
    from invdesign.evaluate import generation_metrics

    generated = _load_or_fail(samples)
    ref = _load_or_fail(reference)
    try:
        # Samples the loader rejected (e.g. atoms closer than 0.5 A) count as invalid (None).
        rejected = [None] * len(generated.summary.skipped)
        metrics = generation_metrics([*generated.structures, *rejected], ref.structures,
                                     dataset, progress=True)
    except (ValueError, ImportError) as err:
        _fail(str(err))
    typer.echo(json.dumps(metrics))


@evaluate_app.command("reconstruction")
def evaluate_reconstruction_cmd(
    model: Annotated[str, typer.Option(help="VAE checkpoint folder or shipped name.")],
    data: Annotated[Path | None, typer.Option(
        help="Structures to reconstruct; default: the checkpoint's held-out test split of "
             "its training file.")] = None,
    refine_steps: Annotated[int, typer.Option(
        help="Gradient steps fitting each latent code to its crystal (0: one-shot encoder "
             "only); the amortised_ keys always report the one-shot encoder.")] = 200,
) -> None:
    """Match rate and RMSE of encode -> decode: one JSON object on the last line."""
    from invdesign.generator import Generator
    from invdesign.train.vae_pipeline import evaluate_reconstruction, held_out_structures

    try:
        generator = Generator.load(model)
        structures = (_load_or_fail(data).structures if data is not None
                      else held_out_structures(generator))
    except (FileNotFoundError, ValueError, KeyError) as err:
        _fail(str(err))
    typer.echo(json.dumps(evaluate_reconstruction(generator, structures,
                                                  refine_steps=max(0, refine_steps))))


@app.command()
def examples(
    out: Annotated[Path, typer.Option(help="Folder to write the CIFs to.")] = Path("examples"),
) -> None:
    """Write reference crystals (Al, Cu, W, Si, diamond, NaCl, MgO, ...) as CIFs.

    Their experimental bulk moduli and thermal expansion go to properties.csv.
    """
    from invdesign.data.examples import REFERENCES, write_examples

    write_examples(out)
    console.print(f"wrote {len(REFERENCES)} CIFs and properties.csv to {out}")


@app.command()
def models() -> None:
    """List the shipped checkpoints with their held-out metrics."""
    from invdesign.surrogate import checkpoints_dir

    table = Table(title=f"checkpoints in {checkpoints_dir()}")
    for col in ("name", "kind", "targets / conditions", "held-out test"):
        table.add_column(col)
    for card_path in sorted(checkpoints_dir().glob("*/card.json")):
        card = json.loads(card_path.read_text())
        metrics = card.get("meta", {}).get("metrics", {})
        config = card.get("config", {})
        if card.get("kind") == "vae":
            rec = metrics.get("test_reconstruction", {})
            summary = (f"match rate {rec['match_rate']:.1%}, RMSE {rec['rmse']:.4f}"
                       if "match_rate" in rec else "")
            names = config.get("conditions", [])
        else:
            summary = ", ".join(f"MAE {k}={v['mae']:.3f}" for k, v in
                                metrics.get("test", {}).items() if isinstance(v, dict))
            names = config.get("targets", [])
        table.add_row(card_path.parent.name, card.get("kind", "?"), ", ".join(names), summary)
    Console().print(table)


def main() -> None:  # pragma: no cover
    app()

