"""`realjudge train [ARCH]`: train a detector on your data and write a calibrated bundle."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import click


@click.command("train")
@click.argument("arch", required=False)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="JSON config file.")
@click.option("--data", multiple=True, help="A labelled source (CIFAKE, ForenSynths, GenImage, real/+fake/, CSV manifest). Repeatable.")
@click.option("--real", multiple=True, help="A source whose images are all real. Repeatable.")
@click.option("--fake", multiple=True, help="A source whose images are all fake. Repeatable.")
@click.option("--layout", default="auto", show_default=True, help="Layout of --data sources.")
@click.option("--group-by", "group_by", default=None, metavar="REGEX",
              help="Images whose paths give the same first capture group of REGEX stay on one side of the "
                   "validation split (e.g. one prompt rendered by several generators).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value (JSON values, dotted keys). Repeatable.")
@click.option("--epochs", type=click.IntRange(1), default=None)
@click.option("--batch-size", type=click.IntRange(2), default=None)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--subset", type=click.IntRange(4), default=None, help="Train on a random subset of this many images.")
@click.option("--seed", type=int, default=None)
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N.")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None, help="Run folder (default runs/NAME).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="Bundle folder (default RUN_DIR/bundle).")
@click.option("--name", default=None, help="Detector name recorded in the bundle.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@click.option("--progress/--no-progress", default=None)
def command(arch, config_path, data, real, fake, layout, group_by, overrides, epochs, batch_size, lr, subset, seed, device,
            run_dir, out_dir, name, resume, progress):
    """Train ARCH (resnet, cifake-cnn, ntf, npr, cnnspot, efficientnet-lite0; see `realjudge models`)
    with the shared engine: validation split by content hash,
    checkpoints every epoch, --resume, calibration, and a bundle at the end.

    On several processes or GPUs: `torchrun --nproc-per-node N -m realjudge train ...` (DDP; rank 0
    validates and writes the run folder; --resume works with any N; docs/SCALING.md)."""
    from ..train import distributed
    from ..train.config import load_config
    from ..train.engine import Trainer

    sources = [{"path": p, "layout": layout} for p in data] + [{"path": p, "label": "real"} for p in real] \
        + [{"path": p, "label": "fake"} for p in fake]
    cfg = load_config(config_path, list(overrides), arch=arch, epochs=epochs, batch_size=batch_size, lr=lr,
                      subset=subset, seed=seed, device=device, name=name, sources=sources or None)
    if group_by:
        cfg.sources = [replace(s, group=group_by) for s in cfg.sources]
        cfg.validate()
    name = cfg.name or cfg.arch
    run = Path(run_dir or Path("runs") / name)
    show = sys.stderr.isatty() if progress is None else progress
    try:
        trainer = Trainer(cfg, run, progress=show)  # joins torchrun's process group, if any
        result = trainer.fit(resume=resume)
        bundle = trainer.export(out_dir or run / "bundle", name)
    finally:
        distributed.shutdown()
    if not trainer.dist.main:
        return  # rank 0 reports for the job
    last = result["history"][-1] if result["history"] else {}
    click.echo(f"bundle: {bundle}")
    if last:
        click.echo(f"last epoch {last['epoch']}: val accuracy {last['val_accuracy']:.4f}, val loss {last['val_loss']:.4f}"
                   + (" (stopped early)" if result["stopped_early"] else ""))
