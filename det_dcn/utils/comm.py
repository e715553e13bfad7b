"""Helpers for torch.distributed that also work in a single process (world size 1)."""

import functools
from typing import Any, List

import torch
import torch.distributed as dist

# Set by det_dcn.engine.launch: the group of processes on this machine, for the local rank.
_LOCAL_PROCESS_GROUP = None


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_local_rank() -> int:
    if not is_dist() or _LOCAL_PROCESS_GROUP is None:
        return 0
    return dist.get_rank(group=_LOCAL_PROCESS_GROUP)


def get_local_size() -> int:
    if not is_dist() or _LOCAL_PROCESS_GROUP is None:
        return 1
    return dist.get_world_size(group=_LOCAL_PROCESS_GROUP)


def is_main_process() -> bool:
    return get_rank() == 0


def synchronize() -> None:
    """Barrier across all processes; a no-op in a single process."""
    if get_world_size() > 1:
        dist.barrier()


@functools.lru_cache()
def _cpu_group():
    # Python objects are gathered over gloo so the same code runs with NCCL (GPU) and gloo (CPU) training.
    if dist.get_backend() == "nccl":
        return dist.new_group(backend="gloo")
    return dist.group.WORLD


def destroy_process_group() -> None:
    """Drop this module's references to process groups, then destroy them all.

    A group object still referenced (the local group, the cached gather group) outlives ``destroy_process_group``
    and is freed during interpreter shutdown, where gloo's threads can abort the process
    ("terminate called without an active exception").
    """
    global _LOCAL_PROCESS_GROUP
    _LOCAL_PROCESS_GROUP = None
    _cpu_group.cache_clear()
    dist.destroy_process_group()


def all_gather(data: Any) -> List[Any]:
    """Gather any picklable object from every rank; returns a list indexed by rank."""
    if get_world_size() == 1:
        return [data]
    output = [None] * get_world_size()
    dist.all_gather_object(output, data, group=_cpu_group())
    return output


def gather(data: Any, dst: int = 0) -> List[Any]:
    """Gather any picklable object onto rank ``dst``; other ranks get an empty list."""
    if get_world_size() == 1:
        return [data]
    group = _cpu_group()
    if get_rank() == dst:
        output = [None] * get_world_size()
        dist.gather_object(data, output, dst=dst, group=group)
        return output
    dist.gather_object(data, None, dst=dst, group=group)
    return []


def all_reduce_max(value: int) -> int:
    """The largest of every rank's ``value`` (a small int), over the CPU group: no GPU synchronisation."""
    if get_world_size() == 1:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_cpu_group())
    return int(t.item())
