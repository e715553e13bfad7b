"""launch(): run a function in one process per GPU (or per requested CPU process), on one or several machines.

- ``num_gpus_per_machine * num_machines == 1``: the function runs in this process, no process group.
- Otherwise one process per local GPU is spawned; they rendezvous at ``dist_url`` ("auto": a free localhost port,
  one machine only; several machines need ``tcp://HOST:PORT`` of machine 0) and use NCCL on GPUs. On a machine
  without CUDA (or with ``backend="gloo"``), ``num_gpus_per_machine`` CPU processes are spawned with gloo: the
  distributed path runs anywhere.
- Under torchrun / SLURM scripts (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` in the environment): the processes already
  exist, so this process joins the group through ``env://`` and runs the function; ``--num-gpus`` is ignored.

Each process sets ``det_dcn.utils.comm._LOCAL_PROCESS_GROUP`` (the processes of its machine) and, on GPUs, its
CUDA device to its local rank.

Stop signals: while spawned processes run, the launching process forwards SIGTERM / SIGUSR1 to them (a cluster or
Kubernetes may signal only the parent). When training stops on such a signal every rank raises ``TrainingStopped``
after the same iteration; the ranks then leave together and ``launch`` raises ``TrainingStopped`` too, so the
command exits with ``EXIT_STOPPED`` (75). A process that dies (e.g. ``kill -9``) makes the others stop at once.
"""

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import traceback
from datetime import timedelta
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from det_dcn.utils import comm

from .preemption import STOP_SIGNALS, TrainingStopped
from .train_loop import is_disk_full

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = timedelta(minutes=30)

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def _find_free_port() -> int:
    """A TCP port free right now on this machine (another process may take it later; rare enough here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launched_by_torchrun() -> bool:
    """True when RANK, WORLD_SIZE and LOCAL_RANK are set (torchrun, tools/dist_train.sh, tools/slurm_train.sh)."""
    return all(v in os.environ for v in _TORCHRUN_VARS)


BACKENDS = ("auto", "nccl", "gloo")


def _resolve_backend(backend: str) -> str:
    """"auto": NCCL when CUDA is available, else gloo (CPU processes)."""
    if backend not in BACKENDS:
        raise ValueError(f"launch: backend must be one of {BACKENDS}, got '{backend}'")
    if backend == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("launch: backend 'nccl' needs CUDA, and no CUDA device is available; use 'gloo'")
    return backend


def _set_local_group(num_machines: int, num_per_machine: int, machine_rank: int) -> None:
    # Every process must take part in creating every group, its own machine's included.
    for i in range(num_machines):
        ranks = list(range(i * num_per_machine, (i + 1) * num_per_machine))
        group = dist.new_group(ranks)
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group


def _limit_cpu_threads(backend: str, num_local_processes: int) -> None:
    # N CPU processes each using every core would oversubscribe the machine and slow everyone down.
    if backend == "gloo" and num_local_processes > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_local_processes))


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = "auto",
    args: Sequence[Any] = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
    backend: str = "auto",
) -> None:
    """Run ``main_func(*args)`` in every process of the job (see the module docstring).

    Args:
        num_gpus_per_machine: processes per machine (GPUs, or CPU processes without CUDA).
        num_machines / machine_rank: the machines of a multi-machine job and this one's index.
        dist_url: "auto", "tcp://HOST:PORT" or "file:///shared/path".
        backend: "auto" (NCCL with CUDA, else gloo), "nccl" or "gloo" (CPU processes even where CUDA exists,
            e.g. for MODEL.DEVICE cpu).
    An exception in any spawned process is re-raised here with that process's traceback.
    """
    backend = _resolve_backend(backend)
    if launched_by_torchrun():
        _run_under_torchrun(main_func, args, timeout, num_gpus_per_machine, backend)
        return
    if num_gpus_per_machine < 1:
        raise ValueError(f"--num-gpus must be >= 1, got {num_gpus_per_machine}")
    if num_machines < 1:
        raise ValueError(f"--num-machines must be >= 1, got {num_machines}")
    if not 0 <= machine_rank < num_machines:
        raise ValueError(f"--machine-rank must be in [0, {num_machines}), got {machine_rank}")
    world_size = num_machines * num_gpus_per_machine
    if world_size == 1:
        main_func(*args)
        return
    if backend == "nccl" and num_gpus_per_machine > torch.cuda.device_count():
        raise ValueError(
            f"--num-gpus {num_gpus_per_machine} but this machine has {torch.cuda.device_count()} CUDA devices "
            "(for CPU processes use MODEL.DEVICE cpu)"
        )
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto works on one machine only; give tcp://HOST:PORT of machine 0")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    if num_machines > 1 and dist_url.startswith("tcp://127.0.0.1"):
        logger.warning(f"--dist-url {dist_url} is a localhost address, but this job spans {num_machines} machines")
    stopped = mp.get_context("spawn").Value("i", 0)  # set by the workers that stopped on a signal
    context = mp.start_processes(
        _distributed_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, tuple(args), timeout, backend,
              stopped),
        daemon=False,
        start_method="spawn",
        join=False,
    )
    with _forward_stop_signals(context.processes):
        while not context.join():
            pass
    if stopped.value:
        raise TrainingStopped(f"Training stopped by a signal on {stopped.value} of {num_gpus_per_machine} "
                              "processes of this machine")


@contextlib.contextmanager
def _forward_stop_signals(processes):
    """Pass SIGTERM / SIGUSR1 received by this (launching) process on to the worker processes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum, frame):
        for p in processes:
            if p.is_alive():
                os.kill(p.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _distributed_worker(
    local_rank: int,
    main_func: Callable[..., Any],
    world_size: int,
    num_gpus_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: Sequence[Any],
    timeout: timedelta,
    backend: str,
    stopped=None,
) -> None:
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    _limit_cpu_threads(backend, num_gpus_per_machine)
    try:
        dist.init_process_group(backend, init_method=dist_url, world_size=world_size, rank=global_rank,
                                timeout=timeout)
    except Exception as e:
        raise RuntimeError(f"Process {global_rank} of {world_size} could not join the group at {dist_url}: {e}") \
            from e
    try:
        _set_local_group(world_size // num_gpus_per_machine, num_gpus_per_machine, machine_rank)
        comm.synchronize()
        try:
            _run_reporting_rank(main_func, args, global_rank)
        except TrainingStopped:
            # Every rank stops after the same iteration (they agree), so all of them get here: leave together.
            with stopped.get_lock():
                stopped.value += 1
        # Only after every rank's last collective may any rank tear the group down; a rank that destroyed it
        # early made gloo's peer threads abort at exit ("terminate called without an active exception").
        comm.synchronize()
    finally:
        comm.destroy_process_group()


def _run_reporting_rank(main_func: Callable[..., Any], args: Sequence[Any], rank: int) -> None:
    # The parent re-raises the error of whichever process it notices first, often a peer's "connection reset"
    # rather than the root cause: print every failing process's traceback, marked with its rank.
    try:
        main_func(*args)
    except TrainingStopped:
        raise  # not a failure: the checkpoint is saved and the log says how to resume
    except OSError as e:
        if not is_disk_full(e):
            raise
        sys.stderr.write(f"[rank{rank}] {e}\n")  # one line says it all (folder, bytes needed)
        raise SystemExit(1) from None
    except BaseException:
        sys.stderr.write(f"[rank{rank}] failed with:\n{traceback.format_exc()}")
        sys.stderr.flush()
        raise


def _run_under_torchrun(main_func: Callable[..., Any], args: Sequence[Any], timeout: timedelta,
                        num_gpus_per_machine: int, backend: str) -> None:
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    if world_size % local_size != 0:
        raise ValueError(f"WORLD_SIZE={world_size} is not a multiple of LOCAL_WORLD_SIZE={local_size}")
    if num_gpus_per_machine not in (1, local_size):
        logger.warning(f"--num-gpus {num_gpus_per_machine} ignored: the launcher started {local_size} processes "
                       "per machine")
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    _limit_cpu_threads(backend, local_size)
    if world_size == 1:
        main_func(*args)
        return
    dist.init_process_group(backend, init_method="env://", world_size=world_size, rank=rank, timeout=timeout)
    stopped = None
    try:
        _set_local_group(world_size // local_size, local_size, rank // local_size)
        comm.synchronize()
        try:
            _run_reporting_rank(main_func, args, rank)
        except TrainingStopped as e:
            stopped = e  # all ranks stop together: leave together, then exit with its status
        comm.synchronize()  # as in _distributed_worker: nobody tears the group down under a peer
    finally:
        comm.destroy_process_group()
    if stopped is not None:
        raise stopped
