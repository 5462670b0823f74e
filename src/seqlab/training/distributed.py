"""Several processes: DistributedDataParallel under torchrun (gloo on CPU, NCCL on CUDA).

    torchrun --standalone --nproc-per-node N -m seqlab translate train ...

torchrun starts N copies of the command and gives each its place in environment variables
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). `session` reads them (`from_env`),
joins the process group and leaves it at the end; without them it yields a one-process
`DistContext` whose collectives do nothing, so the training code has one path.

The sharding rule, which makes W processes train like one: every rank builds the same epoch
list of length-bucketed batches (seeded by (seed, epoch)), and step k's batch, the one a
1-process run takes at step k, is cut into W contiguous row shards of nearly equal cost
(`shard_rows`; the rows of a batch are sorted by length, so each shard stays bucketed). Rank r
computes the summed token loss S_r over its n_r target tokens; the global count N = sum_r n_r
is all-reduced before the backward pass and rank r back-propagates S_r / (N / W). DDP averages
the W gradients: (1/W) sum_r W grad(S_r) / N = grad(sum_r S_r) / N, the gradient of the whole
batch's per-token loss that one process computes. Hence `batch_tokens` (`batch_size`) is the
global, effective batch of an optimizer step whatever W is, the learning rate needs no change,
and a run resumed with another W continues on the same batches and schedule; only the float
rounding (summation order) and the dropout masks (each rank draws from its own random stream)
differ. To use more processes for a larger batch, raise `--batch-tokens` and, as usual with
Adam, the learning rate (e.g. by the square root of the batch ratio) and the warmup.

Rank 0 alone writes files (config, log, checkpoints, best weights) and evaluates on the dev
set; the score is broadcast, so the schedule and the early-stopping rule advance identically
on every rank, and rank 0's clock decides the time budget (`agree`).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from seqlab.device import resolve_device
from seqlab.errors import UserError

__all__ = ["DistContext", "from_env", "session", "shard_rows"]

T = TypeVar("T")

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
# Rank 0 evaluates (and writes checkpoints) while the others wait in a collective.
_TIMEOUT = datetime.timedelta(minutes=60)


def _silent(_: str) -> None:
    pass


@dataclass(frozen=True)
class DistContext:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None         # "gloo" / "nccl" once the process group is joined

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def echo(self, echo: Callable[[str], None]) -> Callable[[str], None]:
        """`echo` on rank 0, a silent one elsewhere (one copy of every message)."""
        return echo if self.is_main else _silent

    def device(self, spec: str) -> torch.device:
        """The device of this rank for `--device spec`: with several processes on CUDA, rank r
        of a machine uses cuda:LOCAL_RANK; a fixed other index or MPS is a UserError."""
        if not self.enabled:
            return resolve_device(spec)
        dev = resolve_device(spec)
        if dev.type == "mps":
            raise UserError(f"device={spec!r}: several processes need cpu (gloo) or cuda "
                            "(NCCL); torch.distributed has no MPS backend")
        if dev.type != "cuda":
            return dev
        if dev.index is not None and spec != "auto" and dev.index != self.local_rank:
            raise UserError(f"device={spec!r}: under torchrun each process uses "
                            f"cuda:LOCAL_RANK (here cuda:{self.local_rank}); give --device cuda")
        n = torch.cuda.device_count()
        if self.local_rank >= n:
            raise UserError(f"LOCAL_RANK={self.local_rank}: this machine has {n} CUDA "
                            f"device(s); start at most {n} processes per node")
        return torch.device("cuda", self.local_rank)

    def made_by_main(self, make: Callable[[], T], load: Callable[[], T]) -> T:
        """Rank 0 runs `make` (which writes files, e.g. trains the tokenizer into the run
        directory); the others wait, then `load` what it wrote."""
        if not self.enabled:
            return make()
        made = make() if self.is_main else None
        self.barrier()
        return made if made is not None else load()

    # ---- collectives (no-ops in one process) ----------------------------------------------

    def _comm(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(f"cuda:{self.local_rank}") if self.backend == "nccl" else t

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        """The sums over all ranks of each of `values` (float64)."""
        if not self.enabled:
            return [float(v) for v in values]
        t = self._comm(torch.tensor(list(values), dtype=torch.float64))
        dist.all_reduce(t)
        return t.cpu().tolist()

    def broadcast(self, value: float | None) -> float | None:
        """Rank 0's `value` (a float or None) on every rank."""
        if not self.enabled:
            return value
        t = self._comm(torch.tensor([float("nan") if value is None else float(value)],
                                    dtype=torch.float64))
        dist.broadcast(t, src=0)
        got = float(t.item())
        return None if got != got else got          # NaN stands for None

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision (stop rules that read a clock must agree on every rank)."""
        return bool(self.broadcast(1.0 if flag else 0.0))

    def all_gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's `t` (same shape and dtype on all ranks), on the CPU, by rank."""
        if not self.enabled:
            return [t]
        mine = self._comm(t.contiguous())
        out = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(out, mine)
        return [o.cpu() for o in out]


def from_env(env: dict[str, str] | None = None) -> DistContext:
    """The DistContext torchrun's variables describe (none set: one process). Partial or
    inconsistent settings are a one-line UserError."""
    env = dict(os.environ if env is None else env)
    present = [k for k in _ENV if k in env]
    if not present:
        return DistContext()
    if len(present) < len(_ENV):
        missing = ", ".join(k for k in _ENV if k not in env)
        raise UserError(f"{', '.join(present)} set but not {missing}: start several processes "
                        "with torchrun (it sets them all), or unset them for one process")
    vals: dict[str, int] = {}
    for k in _ENV:
        try:
            vals[k] = int(env[k])
        except ValueError:
            raise UserError(f"{k}={env[k]!r}: expected an integer (torchrun sets it)") from None
    rank, world, local = vals["RANK"], vals["WORLD_SIZE"], vals["LOCAL_RANK"]
    if world < 1 or not 0 <= rank < world or not 0 <= local <= rank:
        raise UserError(f"RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}: expected "
                        "0 <= LOCAL_RANK <= RANK < WORLD_SIZE")
    if world > 1:
        absent = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not env.get(k)]
        if absent:
            raise UserError(f"WORLD_SIZE={world} but {', '.join(absent)} not set: start "
                            "several processes with torchrun")
    return DistContext(rank, world, local)


@contextlib.contextmanager
def session(device_spec: str = "auto") -> Iterator[DistContext]:
    """Join the process group torchrun describes (gloo for CPU, NCCL for CUDA) and leave it
    at the end; in one process, yield DistContext() and do nothing."""
    ctx = from_env()
    if not ctx.enabled or dist.is_initialized():
        if ctx.enabled:                  # joined by the caller (e.g. a script around the API)
            ctx = DistContext(ctx.rank, ctx.world_size, ctx.local_rank, dist.get_backend())
        yield ctx
        return
    dev = ctx.device(device_spec)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    try:
        dist.init_process_group(backend, timeout=_TIMEOUT)
    except (RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot join the {backend} process group (rank {ctx.rank} of "
                        f"{ctx.world_size}, MASTER_ADDR={os.environ.get('MASTER_ADDR')}:"
                        f"{os.environ.get('MASTER_PORT')}): {first}") from None
    try:
        yield DistContext(ctx.rank, ctx.world_size, ctx.local_rank, backend)
        # Leave together: a rank tearing gloo down while rank 0 still writes its last files
        # can abort in gloo's threads ("terminate called without an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int, step: int) -> int:
    """The seed of rank `rank`'s own random stream (dropout masks) from step `step` on."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


# ---- sharding ------------------------------------------------------------------------------


def shard_rows(rows: Sequence[Any], costs: Sequence[float], world_size: int) -> list[list[Any]]:
    """Cut one batch's `rows` into `world_size` contiguous shards of nearly equal cost.

    rows: the batch (e.g. example indices), in order; costs: (len(rows),) cost of each row
    (e.g. its padded tokens). Every row lands in exactly one shard, in order; shard r ends
    where the running cost is nearest to (r + 1) / world_size of the total, and no shard is
    empty while there are at least `world_size` rows (with fewer, the first len(rows) shards
    get one row each). A shard's cost exceeds total / world_size by at most the costliest
    row. Returns `world_size` lists.
    """
    n = len(rows)
    if len(costs) != n:
        raise ValueError(f"shard_rows: {n} rows but {len(costs)} costs")
    if world_size < 1:
        raise ValueError(f"shard_rows: world_size must be >= 1, got {world_size}")
    if n <= world_size:
        return [[rows[i]] if i < n else [] for i in range(world_size)]
    prefix = np.concatenate([[0.0], np.cumsum(np.asarray(costs, dtype=np.float64))])  # (n+1,)
    total = prefix[-1]
    bounds = [0]
    for r in range(1, world_size):
        target = total * r / world_size
        i = int(np.searchsorted(prefix, target))              # prefix[i-1] < target <= prefix[i]
        if i > 0 and target - prefix[i - 1] < prefix[min(i, n)] - target:
            i -= 1                                            # the nearer of the two cuts
        lo, hi = bounds[-1] + 1, n - (world_size - r)         # leave a row for each shard
        bounds.append(min(max(i, lo), hi))
    bounds.append(n)
    return [list(rows[bounds[r]:bounds[r + 1]]) for r in range(world_size)]
