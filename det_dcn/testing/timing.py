"""Timing of several functions taking turns, with torch.utils.benchmark's clock and Measurement.

``torch.utils.benchmark.Timer`` times one statement at a time, with its own warm-up calls before every
measurement and its own thread count; benchmarks of whole detectors need per-call times of functions that run for
seconds, interleaved so that load on a shared machine hits all of them alike. This helper does that with the same
clock (``torch.utils.benchmark.timer``, which synchronises the accelerator) and returns ``Measurement`` objects
(``.median``, ``.iqr``, printable with ``torch.utils.benchmark.Compare``).
"""

from typing import Callable, Dict, Optional

import torch
from torch.utils.benchmark import Measurement, TaskSpec, timer


def time_interleaved(fns: Dict[str, Callable[[], object]], iters: int, warmup: int = 0, label: str = "",
                     cuda_device: Optional[torch.device] = None) -> Dict[str, Measurement]:
    """Call each function ``warmup`` times, then ``iters`` rounds in which each is called once and timed.

    Returns {name: Measurement} with the per-call seconds in ``raw_times``; with ``cuda_device``, each
    Measurement's ``metadata["cuda_peak_mib"]`` is the largest CUDA memory peak over its calls.
    """
    if iters < 1 or warmup < 0:
        raise ValueError(f"time_interleaved: iters must be >= 1 and warmup >= 0, got {iters} and {warmup}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    peaks = {name: 0.0 for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            if cuda_device is not None:
                torch.cuda.reset_peak_memory_stats(cuda_device)
            start = timer()
            fn()
            times[name].append(timer() - start)
            if cuda_device is not None:
                peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated(cuda_device) / 2 ** 20)
    return {
        name: Measurement(
            number_per_run=1, raw_times=times[name],
            task_spec=TaskSpec(stmt=f"{name}()", setup="", label=label, description=name,
                               num_threads=torch.get_num_threads()),
            metadata={"cuda_peak_mib": peaks[name]} if cuda_device is not None else None,
        )
        for name in fns
    }
