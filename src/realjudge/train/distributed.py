"""Training on several processes (`torchrun --nproc-per-node N -m realjudge train ...`): the process
group, each rank's share of a global batch, the DistributedDataParallel wrapper, and the few
collectives the engine needs. A process that torchrun did not start (no WORLD_SIZE, or 1) gets
`SINGLE` and none of this runs: single-process training is the engine's own loop, unchanged.

What runs where (docs/SCALING.md, "Training on several processes or GPUs"):
- every rank trains on its share of each global batch (`share`): the epoch's permutation is the
  single-process one, a global batch of B rows is cut into N contiguous pieces (np.array_split:
  when N does not divide B the first B % N ranks take one row more, and `loss_weight` rescales each
  rank's loss so that the averaged gradient is still the mean over the B rows);
- DDP averages the gradients, so every rank applies the same step and holds the same weights;
- rank 0 alone validates, writes checkpoints, history, best weights and the bundle; the others wait
  in a broadcast (`agree`: the early-stopping decision) or a barrier (`barrier`, `main_first`).

The backend follows the device: NCCL on CUDA (each process on cuda:LOCAL_RANK, batch norm made
SyncBatchNorm), gloo on CPU (per-rank batch-norm statistics: SyncBatchNorm refuses CPU tensors in
torch 2.13). Every collective has a timeout (REALJUDGE_DIST_TIMEOUT seconds, default 1800), so a
peer that hangs cannot hold the others forever; a peer that dies breaks their connections, and they
end with one line (`PeerLost`) unless torchrun has stopped them first."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from ..errors import RealjudgeError, UsageError
from ..runtime import resolve_device

TIMEOUT_ENV = "REALJUDGE_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0


class PeerLost(RealjudgeError):
    """Another training process stopped (killed, out of memory, failed): this one ends too (exit code 3)."""

    exit_code = 3


@dataclass(frozen=True)
class Context:
    """Where this process stands in the job: rank of world (LOCAL_RANK on its machine), and the backend."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that validates and writes every file."""
        return self.rank == 0


SINGLE = Context()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise UsageError(f"{name}={value!r} is not an integer (torchrun sets it)") from None


def timeout() -> timedelta:
    value = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(value) if value else DEFAULT_TIMEOUT_S
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise UsageError(f"{TIMEOUT_ENV} must be a number of seconds > 0, got {value!r}")
    return timedelta(seconds=seconds)


def init_from_env(device_name: str) -> Context:
    """Join the process group that torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT),
    once per process: NCCL when the training device is CUDA (this process then uses cuda:LOCAL_RANK),
    gloo otherwise. Without torchrun (WORLD_SIZE unset or 1): `SINGLE`, no process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return current()
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return SINGLE
    if not dist.is_available():
        raise UsageError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    device = process_device(device_name, local_rank, world)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        import torch

        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timeout(), rank=rank, world_size=world)
    return Context(rank, world, local_rank, backend)


def current() -> Context:
    """The context of the process group already joined (by `init_from_env` or the caller), else SINGLE."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
        return SINGLE
    return Context(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0), dist.get_backend())


def process_device(device_name: str, local_rank: int = 0, world: int = 1):
    """The training device of this process: `resolve_device`, with CUDA pinned to cuda:LOCAL_RANK
    when torchrun started several processes (one GPU each)."""
    import torch

    device = resolve_device(device_name)
    if world <= 1 or device.type != "cuda":
        return device
    if device.index is not None:
        raise UsageError(f"--device {device_name}: under torchrun each process takes cuda:LOCAL_RANK; "
                         "use --device cuda (or auto)")
    if local_rank >= torch.cuda.device_count():
        raise UsageError(f"LOCAL_RANK {local_rank}: this machine has {torch.cuda.device_count()} GPU(s); "
                         "start at most that many processes per node")
    return torch.device("cuda", local_rank)


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ---------------------------------------------------------------------- the model
def prepare_model(model, ctx: Context):
    """SyncBatchNorm under NCCL (batch statistics over the global batch, as one process computes
    them); under gloo the model is left as it is: each rank normalises with its share's statistics."""
    if ctx.active and ctx.backend == "nccl":
        import torch

        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def _loss_module(model):
    import torch

    class TrainingLoss(torch.nn.Module):
        """DDP synchronises the gradients of what runs through its forward: the model's training loss."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x, y):
            return self.net.training_loss(x, y)

    return TrainingLoss(model)


def training_step(model, ctx: Context, device) -> Callable[[Any, Any], tuple[Any, Any]]:
    """What the loop calls for (loss, logits): `model.training_loss` itself in one process, the same
    through DistributedDataParallel across processes (which starts from rank 0's weights and
    buffers). Two-stage models leave a head unused in each stage (NTF: `cls` in stage 1, `het` in
    stage 2), hence find_unused_parameters for them; their gradients stay None, as in one process."""
    if not ctx.active:
        return model.training_loss
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(_loss_module(model), device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=bool(model.two_stage))


# ---------------------------------------------------------------------- the data
def share(ctx: Context, n: int) -> np.ndarray:
    """This rank's positions in a global batch of `n` rows: contiguous, sizes as equal as can be."""
    if not ctx.active:
        return np.arange(n)
    return np.array_split(np.arange(n), ctx.world)[ctx.rank]


def loss_weight(ctx: Context, k: int, n: int) -> float:
    """The factor on a rank's mean loss over `k` of a batch's `n` rows that makes DDP's average of
    the ranks' gradients the mean over all `n` rows (1.0 when the shares are equal)."""
    return 1.0 if not ctx.active else k * ctx.world / n


def check_batch(ctx: Context, n: int, what: str = "batch_size") -> None:
    if ctx.active and n < ctx.world:
        raise UsageError(f"{what} {n} is smaller than the {ctx.world} training processes: every process needs rows")


def rank_seed(ctx: Context, seed: int) -> int:
    """The torch seed of this rank (dropout, NTF's random views): rank 0 keeps the single-process
    seed, the others draw independent streams from (seed, rank)."""
    if ctx.rank == 0:
        return seed
    return int(np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, ctx.rank]).generate_state(1, np.uint64)[0] >> 1)


# ---------------------------------------------------------------------- collectives
def _tensor(ctx: Context, values, dtype=None):
    import torch

    device = torch.device("cuda", torch.cuda.current_device()) if ctx.backend == "nccl" else "cpu"
    return torch.tensor(values, dtype=dtype or torch.float64, device=device)


def all_sum(ctx: Context, values: list[float]) -> list[float]:
    """Each value summed over the ranks (unchanged in one process)."""
    if not ctx.active:
        return values
    import torch.distributed as dist

    t = _tensor(ctx, values)
    dist.all_reduce(t)
    return [float(v) for v in t.cpu()]


def agree(ctx: Context, flag: bool) -> bool:
    """Rank 0's decision (early stopping), on every rank."""
    if not ctx.active:
        return flag
    import torch
    import torch.distributed as dist

    t = _tensor(ctx, [int(flag)], torch.int64)
    dist.broadcast(t, 0)
    return bool(t.item())


def barrier(ctx: Context) -> None:
    if not ctx.active:
        return
    import torch
    import torch.distributed as dist

    if ctx.backend == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


@contextmanager
def main_first(ctx: Context) -> Iterator[None]:
    """Rank 0 runs the block first (decoding the data set into the shared cache), the others after it."""
    if ctx.active and not ctx.main:
        barrier(ctx)
    yield
    if ctx.active and ctx.main:
        barrier(ctx)


@contextmanager
def peers_reported(ctx: Context) -> Iterator[None]:
    """A collective that fails because a peer died (or timed out) ends this process with one line,
    not a traceback: torchrun's own report names the process that failed first."""
    if not ctx.active:
        yield
        return
    import torch.distributed as dist

    try:
        yield
    except (dist.DistError, RuntimeError) as err:
        if not _is_peer_failure(err):
            raise
        raise PeerLost(f"rank {ctx.rank}: another training process stopped or timed out "
                       f"({' '.join(str(err).split())[:200]}); continue with --resume, on any number of "
                       "processes, from the last checkpoint") from None


def _is_peer_failure(err: BaseException) -> bool:
    import torch.distributed as dist

    if isinstance(err, dist.DistError):
        return True
    text = str(err).lower()
    return any(s in text for s in ("connection closed by peer", "connection reset by peer", "broken pipe",
                                   "timed out", "watchdog"))
