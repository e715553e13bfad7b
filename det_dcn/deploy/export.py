"""Export an eval detector: ``torch.export`` program (.pt2) or a plain ONNX file that stock onnxruntime runs.

Both trace :class:`ExportableDetector` (one uint8 H x W x 3 image in INPUT.FORMAT, any H and W) around a copy of
the model whose op modules were swapped for their export forms (:func:`make_exportable`). The ONNX file holds
default-domain operators only (DeformConv needs opset >= 19) and carries the contract in its metadata.
"""

import contextlib
import io
import json
import logging
import time
from typing import Dict, Iterator, List, Optional

import torch
from torch import nn

from ..utils.atomic_io import atomic_open
from .detector import INPUT_NAMES, OUTPUT_NAMES, ExportableDetector
from .export_modules import ExportError, has_deform_conv, make_exportable
from .metadata import CONTRACT, METADATA_PREFIX

logger = logging.getLogger(__name__)

MIN_DEFORM_CONV_OPSET = 19  # ONNX DeformConv
DEFAULT_OPSET = 19
# Any image size the model can take: the resize inside brings it to MIN_SIZE_TEST / MAX_SIZE_TEST.
_MIN_SIDE, _MAX_SIDE = 32, 16384
_INSTALL_HINT = "ONNX export needs onnx and onnxscript: pip install onnx onnxscript onnxruntime (or pip install -e '.[export]')"


def _example_image(cfg) -> torch.Tensor:
    """A uint8 [H, W, 3] image for tracing (its size is not baked in: H and W are dynamic)."""
    side = max(int(cfg.INPUT.MIN_SIZE_TEST), 64)
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (side, side * 4 // 3, 3), dtype=torch.uint8, generator=g)


def _dynamic_shapes():
    height = torch.export.Dim("height", min=_MIN_SIDE, max=_MAX_SIDE)
    width = torch.export.Dim("width", min=_MIN_SIDE, max=_MAX_SIDE)
    return ({0: height, 1: width},)


def _foreign_modules(model: nn.Module):
    """Names and classes of modules from outside torch and det_dcn (likely culprits when tracing fails)."""
    out = []
    for name, m in model.named_modules():
        root = type(m).__module__.split(".")[0]
        if root not in ("torch", "torchvision", "det_dcn"):
            out.append(f"{name or '<model>'} ({type(m).__module__}.{type(m).__qualname__})")
    return out


@contextlib.contextmanager
def _nms_may_keep_zero_boxes() -> Iterator[None]:
    """While tracing, torchvision's NMS may keep 0 or 1 boxes.

    torchvision's fake NMS kernel declares its output size with ``create_unbacked_symint()``, whose lower bound is
    2, and torch.export turns that bound into a runtime assertion: the program would fail on every image with fewer
    than two detections of a class after NMS (an empty image included). This registers a fake kernel with a lower
    bound of 0 for the duration of the trace; leaving the block removes it and torchvision's comes back.
    """
    import torchvision  # noqa: F401  (registers torchvision::nms)

    def fake_nms(dets, scores, iou_threshold):
        torch._check(dets.dim() == 2 and dets.size(1) == 4, lambda: f"nms: boxes must be [N, 4], got {dets.shape}")
        torch._check(scores.dim() == 1 and scores.size(0) == dets.size(0),
                     lambda: f"nms: scores must be [N] for {dets.size(0)} boxes, got {scores.shape}")
        kept = torch.library.get_ctx().new_dynamic_size(min=0)
        torch._check(kept <= dets.size(0))
        return dets.new_empty(kept, dtype=torch.long)

    library = torch.library.Library("torchvision", "FRAGMENT")  # destroyed on exit, taking the kernel with it
    torch.library.register_fake("torchvision::nms", fake_nms, lib=library)
    try:
        yield
    finally:
        library._destroy()


def export_program(model: nn.Module, cfg) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` (eval detector) wrapped in the export contract, with dynamic H and W.

    Raises ExportError naming the module when one has no export path, or when tracing fails (with the modules of
    classes from outside torch / det_dcn, the usual cause).
    """
    wrapper = ExportableDetector(make_exportable(model))
    start = time.perf_counter()
    logger.info("Tracing the detector with torch.export (dynamic height and width)...")
    try:
        with torch.no_grad(), _nms_may_keep_zero_boxes():
            program = torch.export.export(wrapper, (_example_image(cfg),), dynamic_shapes=_dynamic_shapes())
    except Exception as e:
        foreign = _foreign_modules(wrapper)
        hint = f"; modules from outside torch and det_dcn: {foreign}" if foreign else ""
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ExportError(f"torch.export of the detector failed ({type(e).__name__}: {first}){hint}") from e
    logger.info("torch.export done in %.1f s", time.perf_counter() - start)
    return program


def save_program(program: torch.export.ExportedProgram, path: str) -> None:
    """Write ``program`` to ``path`` (.pt2) atomically; reload with :func:`load_program`."""
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    with atomic_open(path, "wb", fsync=True) as f:
        f.write(buffer.getvalue())


def load_program(path: str) -> torch.export.ExportedProgram:
    """Reload a program written by :func:`save_program`: ``load_program(path).module()(image)``.

    Registers the operators a det_dcn program may hold (torchvision's NMS / RoIAlign / deform_conv2d, det_dcn's
    own) before deserialising; ``torch.export.load`` alone fails on them with "failed to resolve ... operator".
    """
    import torchvision  # noqa: F401

    from .. import layers  # noqa: F401  (det_dcn::* operators)

    return torch.export.load(path)


def contract_metadata(cfg) -> Dict[str, str]:
    """The metadata an exported ONNX file carries: the contract and what a runtime needs to feed it."""
    return {
        f"{METADATA_PREFIX}contract": CONTRACT,
        f"{METADATA_PREFIX}input_format": cfg.INPUT.FORMAT,
        f"{METADATA_PREFIX}min_size_test": str(cfg.INPUT.MIN_SIZE_TEST),
        f"{METADATA_PREFIX}max_size_test": str(cfg.INPUT.MAX_SIZE_TEST),
        f"{METADATA_PREFIX}num_classes": str(cfg.MODEL.ROI_HEADS.NUM_CLASSES),
        f"{METADATA_PREFIX}outputs": json.dumps(list(OUTPUT_NAMES)),
        f"{METADATA_PREFIX}config": cfg.dump(),
    }


def _check_standard_ops(proto) -> None:
    """Raise ExportError unless every operator of ``proto`` is in ONNX's default domain."""
    custom = sorted({f"{n.domain}::{n.op_type}" for n in proto.graph.node if n.domain not in ("", "ai.onnx")})
    if proto.functions or custom:
        names = custom + [f"{f.domain}::{f.name} (function)" for f in proto.functions]
        raise ExportError(f"the exported graph uses operators outside ONNX's default domain: {names}; stock "
                          f"runtimes cannot run it")


def program_to_onnx(program: torch.export.ExportedProgram, example: tuple, opset_version: int = DEFAULT_OPSET,
                    input_names: Optional[List[str]] = None, output_names: Optional[List[str]] = None):
    """The ONNX ModelProto of ``program`` (traced on ``example``), default-domain operators only (else ExportError)."""
    with _nms_may_keep_zero_boxes():  # the translation re-traces the program (decompositions)
        onnx_program = torch.onnx.export(program, example, dynamo=True, opset_version=opset_version,
                                         input_names=input_names, output_names=output_names, optimize=True)
    proto = onnx_program.model_proto
    _check_standard_ops(proto)
    return proto


def export_onnx(model: nn.Module, cfg, path: str, opset_version: int = DEFAULT_OPSET,
                program: Optional[torch.export.ExportedProgram] = None) -> None:
    """Export ``model`` (eval detector built from ``cfg``) to a plain ONNX file at ``path``.

    Args:
        opset_version: ONNX opset (>= 19 when the model has deformable convolutions: ONNX DeformConv).
        program: a program from :func:`export_program` of the same model, to skip tracing again.
    """
    dcn = has_deform_conv(model)
    if dcn is not None and opset_version < MIN_DEFORM_CONV_OPSET:
        raise ExportError(f"--opset {opset_version}: the model has deformable convolutions (first: '{dcn}'), "
                          f"whose ONNX operator DeformConv exists from opset {MIN_DEFORM_CONV_OPSET}; use "
                          f"--opset {MIN_DEFORM_CONV_OPSET} or higher")
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ImportError(f"{_INSTALL_HINT} (missing: {e.name})") from None
    if program is None:
        program = export_program(model, cfg)
    start = time.perf_counter()
    logger.info("Translating to ONNX (opset %d)...", opset_version)
    proto = program_to_onnx(program, (_example_image(cfg),), opset_version, list(INPUT_NAMES), list(OUTPUT_NAMES))
    for key, value in contract_metadata(cfg).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = CONTRACT
    with atomic_open(path, "wb", fsync=True) as f:
        f.write(proto.SerializeToString())
    logger.info("Wrote %s (%.1f MB) in %.1f s", path, proto.ByteSize() / 2**20, time.perf_counter() - start)
