"""Random number generators: the one seed resolution, the one seeding rule, and capturing / restoring RNG states.

- ``resolve_seed``: SEED >= 0 as is; < 0: a seed drawn on rank 0 and shared by every rank (the data order and the
  initial model must agree across ranks). Used by the trainer, ``default_setup`` and the data samplers.
- ``seed_from_cfg``: resolves ``cfg.SEED`` (storing a drawn seed in ``cfg`` so config.yaml can repeat the run) and
  seeds Python / NumPy / torch with SEED + rank.

The RNG states (Python, NumPy, torch CPU and CUDA) are part of a training checkpoint: without them a resumed run
draws different RPN / RoI samples and flips than the uninterrupted run would have, and is no longer bit-identical.
"""

import logging
import os
import random
from datetime import datetime
from typing import Any, Dict, Optional

import numpy as np
import torch

from det_dcn.utils import comm

logger = logging.getLogger(__name__)


def generate_seed() -> int:
    """A fresh seed from the pid, the clock and the OS entropy pool (fits in 31 bits)."""
    return (os.getpid() + int(datetime.now().strftime("%S%f")) + int.from_bytes(os.urandom(2), "big")) % (2**31)


def resolve_seed(seed: Optional[int]) -> int:
    """``seed`` if it is >= 0, else a fresh seed drawn on rank 0 and shared by every rank."""
    if seed is None or int(seed) < 0:
        return int(comm.all_gather(generate_seed())[0])
    return int(seed)


def seed_from_cfg(cfg) -> int:
    """Seed this process with SEED + rank after resolving ``cfg.SEED`` (< 0: draw one, log it, store it in ``cfg``
    even when frozen). Returns the resolved SEED (without the rank)."""
    seed = resolve_seed(cfg.SEED)
    if seed != cfg.SEED:
        was_frozen = cfg.is_frozen()
        cfg.defrost()
        cfg.SEED = seed
        if was_frozen:
            cfg.freeze()
        logging.getLogger("det_dcn").info(f"SEED < 0: using the generated seed {seed} (saved in config.yaml)")
    seed_all_rng(seed + comm.get_rank())
    return seed


def seed_all_rng(seed: Optional[int] = None) -> int:
    """Seed Python's ``random``, NumPy and torch (CPU and all CUDA devices); None draws a seed and logs it.

    Returns the seed used.
    """
    if seed is None:
        seed = generate_seed()
        logger.info(f"Using a generated random seed {seed}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return seed


def get_rng_state() -> Dict[str, Any]:
    """This process's RNG states, as plain Python objects and tensors (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, keys.tolist(), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore states captured by ``get_rng_state``."""
    missing = {"python", "numpy", "torch"} - set(state)
    if missing:
        raise ValueError(f"set_rng_state: the saved state lacks {sorted(missing)}; it has {sorted(state)}")
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) != torch.cuda.device_count():
            logger.warning(
                f"The checkpoint holds CUDA RNG states of {len(cuda_states)} devices, this machine has "
                f"{torch.cuda.device_count()}; CUDA RNG states not restored"
            )
        else:
            torch.cuda.set_rng_state_all(cuda_states)
