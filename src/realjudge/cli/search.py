"""`realjudge search DATA`: the CIFAKE paper's topology search (or a custom grid, or TPE), resumable."""

from __future__ import annotations

import sys

import click


@click.command("search")
@click.argument("data", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/search", show_default=True,
              help="Search folder: results.json, table.csv, table.md, runs/, best/ (the winner as a bundle).")
@click.option("--grid", type=click.Choice(["paper", "custom"]), default="paper", show_default=True,
              help="paper: 12 convolution stages, then 24 dense heads on the best; custom: the --topology list.")
@click.option("--topology", "topologies", multiple=True, metavar="NCONVxFILTERS/NDENSExUNITS",
              help="A topology of the custom grid, e.g. 2x32/1x64. Repeatable.")
@click.option("--dense-base", default=None, metavar="NCONVxFILTERS",
              help="Paper grid: run the dense stage on this convolution stage (e.g. 2x32, the paper's) instead of the best one.")
@click.option("--strategy", type=click.Choice(["grid", "tpe"]), default="grid", show_default=True,
              help="grid: every topology of --grid; tpe: --trials topologies proposed by optuna's TPE sampler.")
@click.option("--trials", type=click.IntRange(1), default=20, show_default=True, help="TPE trials.")
@click.option("--epochs", type=click.IntRange(1), default=2, show_default=True, help="Epochs per topology.")
@click.option("--subset", type=click.IntRange(4), default=None, help="Train every topology on the same random subset of this many images.")
@click.option("--budget", type=click.IntRange(1), default=None,
              help="Training images seen per topology; sets the epochs (budget / training images, rounded, at least 1).")
@click.option("--max-macs", type=click.IntRange(1), default=None,
              help="List but do not train networks above this many multiply-adds per image (a CPU budget).")
@click.option("--batch-size", type=click.IntRange(2), default=128, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto (a GPU when present), cpu, cuda or cuda:N.")
@click.option("--threads", type=click.IntRange(0), default=0, help="torch CPU threads (0: torch's default).")
@click.option("--progress/--no-progress", default=None)
def command(data, out_dir, grid, topologies, dense_base, strategy, trials, epochs, subset, budget, max_macs, batch_size, lr, seed, device,
            threads, progress):
    """Train every topology with the same budget, seed and validation split; write a table and the best bundle.

    Re-running with the same --out skips the topologies already finished (an interrupted search
    resumes). DATA: one or more labelled sources (e.g. the CIFAKE zip or tar).
    """
    from ..search import SearchSettings, Topology, run_search

    settings = SearchSettings(sources=list(data), out=out_dir, epochs=epochs, subset=subset, budget=budget, max_macs=max_macs, seed=seed,
                              batch_size=batch_size, lr=lr, device=device, threads=threads,
                              progress=sys.stderr.isatty() if progress is None else progress)
    parsed = [Topology.parse(s) for s in topologies]
    if parsed and grid == "paper":
        grid = "custom"
    base = None
    if dense_base:
        t = Topology.parse(f"{dense_base}/1x64")
        base = (t.n_conv, t.filters)
    run_search(settings, grid=grid, topologies=parsed, strategy=strategy, trials=trials, log=click.echo, dense_base=base)
