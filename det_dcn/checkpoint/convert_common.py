"""What every checkpoint converter shares: reading foreign files safely, renaming keys, the ResNet layouts.

A converter is ``fn(state) -> (det_dcn state dict, unmatched keys)``: every input key either lands under a det_dcn
name or is returned in ``unmatched`` (sorted), so the caller can report it; BatchNorm ``num_batches_tracked``
counters are dropped silently (det_dcn's frozen norms have none).
"""

import os
import pickle
import re
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

StateDict = Dict[str, torch.Tensor]
Converted = Tuple[StateDict, List[str]]


class ConversionError(ValueError):
    """A checkpoint that cannot be read or converted; the message names the file."""


def rename_keys(state: StateDict, rename: Callable[[str], Optional[str]]) -> Converted:
    """Apply ``rename`` (None = no counterpart) to every key; returns (renamed state dict, sorted unmatched keys)."""
    out, unmatched = {}, []
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        new_key = rename(key)
        if new_key is None:
            unmatched.append(key)
        elif new_key in out:
            raise ValueError(f"Two checkpoint keys map to the det_dcn key '{new_key}' (the second is '{key}')")
        else:
            out[new_key] = value
    return out, sorted(unmatched)


# torchvision-style ResNet (torchvision, mmdetection): block part -> det_dcn block part. mmcv's deformable 3x3 keeps
# its offset conv inside conv2 ("conv2.conv_offset"), as det_dcn does.
_BLOCK_PARTS = {
    "conv1": "conv1", "bn1": "conv1.norm", "conv2": "conv2", "bn2": "conv2.norm", "conv3": "conv3",
    "bn3": "conv3.norm", "downsample.0": "shortcut", "downsample.1": "shortcut.norm",
    "conv2.conv_offset": "conv2.conv_offset",
}
_RESNET_BLOCK = re.compile(r"^layer([1-4])\.(\d+)\.(conv2\.conv_offset|conv[123]|bn[123]|downsample\.[01])\.(\w+)$")
_RESNET_STEM = re.compile(r"^(conv1|bn1)\.(\w+)$")


def torchvision_resnet_key(key: str) -> Optional[str]:
    """torchvision / mmdetection ResNet key (``layer1.0.bn2.weight``) -> det_dcn ResNet key (``res2.0.conv2.norm.
    weight``, no prefix), or None if it has no counterpart (e.g. the classifier ``fc.*``)."""
    m = _RESNET_STEM.match(key)
    if m:
        return ("stem.conv1." if m.group(1) == "conv1" else "stem.conv1.norm.") + m.group(2)
    m = _RESNET_BLOCK.match(key)
    if m:
        stage, block, part, leaf = m.groups()
        return f"res{int(stage) + 1}.{block}.{_BLOCK_PARTS[part]}.{leaf}"
    return None


# ------------------------------------------------------------------------------------------------------------------
# Reading files
# ------------------------------------------------------------------------------------------------------------------

# What a pickle of numpy arrays in plain containers needs (numpy 1 and 2 module names); nothing that runs code.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # protocol <= 2 pickles written by Python 3 store bytes (array data) this way
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(
                f"it needs {module}.{name}, and det_dcn's restricted unpickler allows only numpy arrays and plain "
                f"containers (dict, list, tuple, str, numbers); save the weights as a dict of numpy arrays with the "
                f"framework that wrote them"
            )
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core."):]  # numpy 2 moved it; avoid the deprecated alias
        return getattr(__import__(module, fromlist=[name]), name)


def load_pickle(path: str) -> Any:
    """Unpickle ``path`` allowing only numpy arrays and plain containers (Python 2 pickles: latin1 strings)."""
    with open(path, "rb") as f:
        try:
            return _ArraysOnlyUnpickler(f, encoding="latin1").load()
        except Exception as e:  # UnpicklingError, EOFError, ValueError ... from a corrupt or foreign file
            raise ConversionError(f"Cannot read '{path}' as a pickle of numpy arrays: {e}") from e


def _to_tensor(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    return value


def load_checkpoint_file(path: str) -> Dict[str, Any]:
    """Read a foreign checkpoint: a ``.pkl`` (restricted unpickler; numpy arrays become tensors) or a torch file
    (``torch.load(weights_only=True)``). Returns the top-level dict; ConversionError naming the file otherwise."""
    if not os.path.isfile(path):
        raise ConversionError(f"Input checkpoint '{path}' does not exist")
    if path.endswith(".pkl"):
        obj = load_pickle(path)
        if isinstance(obj, dict):
            obj = {k: ({kk: _to_tensor(vv) for kk, vv in v.items()} if isinstance(v, dict) else _to_tensor(v))
                   for k, v in obj.items()}
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises various types for corrupt / non-torch / code-carrying files
            raise ConversionError(
                f"Cannot read input checkpoint '{path}' as a torch file of tensors and plain containers: {e}. "
                f"If it also holds training state (optimizer, hooks) and you trust it, save only its weights: "
                f"torch.save(torch.load(IN, weights_only=False)['state_dict'], OUT)"
            ) from e
    if not isinstance(obj, dict):
        raise ConversionError(f"Input checkpoint '{path}' is not a state dict (a mapping of names to tensors); "
                              f"got {type(obj).__name__}")
    return obj


def state_dict_of(obj: Dict[str, Any], path: str, keys=("model", "state_dict", "blobs")) -> StateDict:
    """The state dict inside a loaded checkpoint: ``obj[k]`` for the first of ``keys`` present, else ``obj``;
    tensors only (other entries, e.g. detectron2's ``__author__`` string, are not weights)."""
    for key in keys:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ConversionError(f"Input checkpoint '{path}' holds no tensors (expected a state dict, or one under "
                              f"{list(keys)}); its keys: {sorted(obj)[:8]}")
    return state


# ------------------------------------------------------------------------------------------------------------------
# MODEL.WEIGHTS that name another framework's file
# ------------------------------------------------------------------------------------------------------------------

DETECTRON2_URL = "https://dl.fbaipublicfiles.com/detectron2/"  # what detectron2 resolves "detectron2://" to


def foreign_weights_message(path: str) -> Optional[str]:
    """For a MODEL.WEIGHTS det_dcn cannot load as it is (a detectron2:// or http(s) address, a .pkl), the one-line
    message with the download and conversion commands; None for anything else."""
    name = os.path.basename(path.split("?")[0]) or "weights.pkl"
    out = os.path.splitext(name)[0] + "_det_dcn.pth"
    if path.startswith("detectron2://"):
        url = DETECTRON2_URL + path[len("detectron2://"):]
        source = "detectron2-c2" if path.startswith("detectron2://ImageNetPretrained/") else "detectron2"
        return (f"MODEL.WEIGHTS '{path}' is a detectron2 model-zoo address; det_dcn loads local det_dcn checkpoints "
                f"only (no download). Download {url}, then run: python tools/convert_weights.py {source} {name} "
                f"{out} and set MODEL.WEIGHTS {out}")
    if "://" in path:
        return (f"MODEL.WEIGHTS '{path}' is a URL; det_dcn loads local det_dcn checkpoints only (no download). "
                f"Download it, convert it with tools/convert_weights.py (sources: torchvision, detectron2, "
                f"detectron2-c2, mmdet) and set MODEL.WEIGHTS to the output")
    if path.endswith(".pkl"):
        return (f"MODEL.WEIGHTS '{path}' is a pickle (detectron2 model zoo or Caffe2 format), which det_dcn does not "
                f"load directly; convert it: python tools/convert_weights.py detectron2 {path} {out} (a Caffe2 "
                f"ImageNet backbone such as R-50.pkl: detectron2-c2) and set MODEL.WEIGHTS {out}")
    return None
