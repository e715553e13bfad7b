#!/usr/bin/env python
r"""Draw where the deformable layers of a trained model sample, for one image.

    python tools/visualize_offsets.py --config-file configs/quickstart/faster_rcnn_shapes_dconv.yaml \
        --input image.jpg --output offsets_out [--position X Y] [--layer NAME ...] [--detections N] \
        [--confidence-threshold T] MODEL.WEIGHTS output/quickstart_mdconv_mdpool/model_final.pth [KEY VALUE ...]

Writes into DIR (NAME = the image's stem):
- NAME_overview.png: panels side by side: detections | DCN sampling points vs regular grid | dpool bins vs
  regular bins (the panels the model has);
- NAME_detections.png, NAME_dcn.png (the stacked layers' points for one position, 9 x 9 = 81 points for two
  layers as in the DCN paper's figure), NAME_dcn_positions.png (several positions of the top layer: the offsets
  are learned per position), NAME_dpool_<i>.png (one per detection, up to --detections).

Propagation follows the DCN paper's figure: each sampling point of a deformable layer is taken as an output
position of the deformable layer below it (offsets bilinearly interpolated there); the plain convs in between are
not drawn. Offsets are read by hooks that call each deformable layer's own predict_offset on its input, so they are
exactly what the model used for this image.

The DCN position defaults to the centre of the top detection (else the image centre); --position X Y gives it in
the input image's pixels. --layer picks the deformable convs (module names, listed when a name is wrong), top
layer last; the default is the last --levels of the model.
"""

import argparse
import os
import sys
from typing import List, Optional, Sequence

import numpy as np
import torch

from det_dcn.config.overrides import parse_args_with_overrides
from det_dcn.data import read_image
from det_dcn.utils.atomic_io import atomic_imwrite, ensure_output_dir
from det_dcn.vis.class_names import class_names_from_cfg
from det_dcn.vis.deform_hooks import DeformRecorder, deformable_conv_modules, deformable_pool_modules
from det_dcn.vis.deform_sampling import dcn_sampling_points, nearest_unit, propagate_sampling, roi_bins
from det_dcn.vis.offset_figures import dcn_panel, dcn_positions_panel, detections_panel, dpool_panel
from det_dcn.vis.tool_args import add_common_args, load_tool_cfg
from det_dcn.vis.visualizer import class_color, class_name, hstack_panels


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--input", required=True, metavar="IMAGE", help="one image file")
    p.add_argument("--output", required=True, metavar="DIR")
    p.add_argument("--position", nargs=2, type=float, default=None, metavar=("X", "Y"),
                   help="image position (input pixels) for the DCN sampling points")
    p.add_argument("--layer", nargs="+", default=None, metavar="NAME",
                   help="deformable conv module names to stack, bottom to top, full or without the "
                        "'backbone.bottom_up.' prefix (default: the last --levels)")
    p.add_argument("--levels", type=int, default=2, help="stacked deformable layers to propagate through")
    p.add_argument("--detections", type=int, default=1, help="detections to draw dpool bins for")
    p.add_argument("--confidence-threshold", type=float, default=0.3)
    p.add_argument("--panel-size", type=int, default=420, help="side of each square panel in pixels")
    return add_common_args(p)


def check_args(args: argparse.Namespace) -> None:
    """ValueError naming the option and value when a numeric option is out of range."""
    if not 0.0 <= args.confidence_threshold <= 1.0:
        raise ValueError(f"--confidence-threshold must be in [0, 1], got {args.confidence_threshold}")
    if args.detections < 0:
        raise ValueError(f"--detections must be >= 0, got {args.detections}")
    if args.levels < 1:
        raise ValueError(f"--levels must be >= 1, got {args.levels}")
    if args.panel_size < 160:
        raise ValueError(f"--panel-size must be >= 160 pixels (room for the legend), got {args.panel_size}")


def pick_layers(records: dict, names: Optional[Sequence[str]], levels: int) -> List[str]:
    """Deformable conv names to stack, bottom to top; ValueError naming the unknown layer and listing the known."""
    known = list(records)
    if not known:
        return []
    if names:
        by_short = {short_name(n): n for n in known}
        unknown = [n for n in names if n not in records and n not in by_short]
        if unknown:
            raise ValueError(f"--layer {unknown} not among the model's deformable convs: {known}")
        return [n if n in records else by_short[n] for n in names]
    if levels < 1:
        raise ValueError(f"--levels must be >= 1, got {levels}")
    return known[-levels:]


def resize_ratios(cfg, height: int, width: int) -> np.ndarray:
    """(x, y) factors from the input image's pixels to the pixels of the image the model sees (its own test-time
    resize to INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST in INPUT.RESIZE_STYLE, boxes mapped back by the size ratio)."""
    from det_dcn.modeling.meta_arch.preprocess import resized_size

    h, w = resized_size(height, width, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, cfg.INPUT.RESIZE_STYLE)
    return np.array([w / width, h / height])


def run_pooler_on_boxes(model, features, boxes_resized: torch.Tensor) -> None:
    """Run the model's box pooler on ``boxes_resized`` ([K, 4] in the resized image) so the recorder sees the
    deformable pooler's offsets for exactly these boxes."""
    roi_heads = model.roi_heads
    feats = [features[f] for f in roi_heads.box_in_features]
    roi_heads.box_pooler(feats, [boxes_resized.to(feats[0].device, feats[0].dtype)])


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args_with_overrides(get_parser(), argv)
    try:
        check_args(args)
        cfg = load_tool_cfg(args, args.confidence_threshold)
        ensure_output_dir(args.output)
        image = read_image(args.input)
    except ValueError as e:
        print(f"[visualize_offsets] error: {e}", file=sys.stderr)
        return 2

    from det_dcn.engine import DefaultPredictor

    predictor = DefaultPredictor(cfg)
    model = predictor.model
    if not deformable_conv_modules(model) and not deformable_pool_modules(model):
        print(f"[visualize_offsets] error: the model of {args.config_file} has no deformable conv or deformable "
              "RoI pooler (set MODEL.RESNETS.DEFORM_ON_PER_STAGE or MODEL.ROI_BOX_HEAD.POOLER_TYPE)",
              file=sys.stderr)
        return 1
    h, w = image.shape[:2]
    scale = resize_ratios(cfg, h, w)  # (x, y): input image -> resized image
    features = {}
    hook = model.backbone.register_forward_hook(lambda m, a, out: features.update(out))
    try:
        # inference_mode like the predictor: its feature maps are inference tensors.
        with DeformRecorder(model) as rec, torch.inference_mode():
            pred = predictor(image)
            keep = (pred["scores"] >= args.confidence_threshold).nonzero().flatten()
            keep = keep[pred["scores"][keep].argsort(descending=True)]
            boxes = pred["boxes"][keep].float().cpu().numpy()
            scores = pred["scores"][keep].float().cpu().numpy()
            classes = pred["classes"][keep].cpu().numpy()
            rec.clear_pool()
            n_pool = min(args.detections, len(boxes))
            if deformable_pool_modules(model) and n_pool > 0:
                run_pooler_on_boxes(model, features, torch.as_tensor(boxes[:n_pool] * np.tile(scale, 2)))
    finally:
        hook.remove()

    class_names = class_names_from_cfg(cfg)
    try:
        names = pick_layers(rec.dcn, args.layer, args.levels)
    except ValueError as e:
        print(f"[visualize_offsets] error: {e}", file=sys.stderr)
        return 2
    stem = os.path.splitext(os.path.basename(args.input))[0] or "image"
    size = args.panel_size
    if args.position is not None:
        position = np.array(args.position, dtype=np.float64)
    elif len(boxes):
        position = (boxes[0, :2] + boxes[0, 2:]) / 2
    else:
        position = np.array([w / 2.0, h / 2.0])

    figures = dcn_figures(image, rec, names, position, scale, size)
    unit = figures.pop("unit", None)
    figures["detections"] = detections_panel(image, boxes, scores, classes, class_names, size, unit,
                                             args.confidence_threshold)
    dpool, pool_notes = dpool_figures(image, rec.pool, boxes[:n_pool], scores, classes, class_names, scale, size)
    figures.update(dpool)
    if deformable_pool_modules(model) and n_pool == 0:
        pool_notes.append(f"no detection with score >= {args.confidence_threshold}: no dpool figure "
                          "(lower --confidence-threshold)")
    overview = [figures[k] for k in ("detections", "dcn", "dpool_0") if k in figures]

    written = []
    for key, fig in [("overview", hstack_panels(overview))] + list(figures.items()):
        path = os.path.join(args.output, f"{stem}_{key}.png")
        atomic_imwrite(path, fig)
        written.append(path)
    for note in pool_notes:
        print(f"[visualize_offsets] note: {note}")
    print(f"[visualize_offsets] {len(boxes)} detection(s); deformable convs shown: "
          f"{[short_name(n) for n in names] or 'none'}; wrote:")
    for path in written:
        print(f"  {path}")
    return 0


def dcn_figures(image, rec, names, position, scale, size) -> dict:
    """"dcn" (stacked layers' points for the unit nearest to ``position``) and "dcn_positions" figures, plus
    "unit": that unit's centre in input pixels. Empty when ``names`` is."""
    if not names:
        return {}
    inv = 1.0 / scale
    h, w = image.shape[:2]
    recs = [rec.dcn[n] for n in reversed(names)]  # top layer first
    _, unit_resized = nearest_unit(recs[0], position * scale)
    to_orig = lambda levels: [(p * inv, wt) for p, wt in levels]  # noqa: E731
    out = {"unit": unit_resized * inv}
    out["dcn"] = dcn_panel(
        image, out["unit"], to_orig(propagate_sampling(recs, unit_resized)),
        to_orig(propagate_sampling(recs, unit_resized, regular=True)), [short_name(r.name) for r in recs],
        [r.out_stride for r in recs], any(r.mask is not None for r in recs), size,
        notes=[f"{short_name(r.name)}: deformable group 0 of {r.deform_groups} shown"
               for r in recs if r.deform_groups > 1])
    units = position_grid(recs[0], h * scale[1], w * scale[0])
    pts, _ = dcn_sampling_points(recs[0], units)
    reg, _ = dcn_sampling_points(recs[0], units, regular=True)
    out["dcn_positions"] = dcn_positions_panel(image, units * inv, pts * inv, reg * inv, short_name(recs[0].name),
                                               size)
    return out


def dpool_figures(image, pool_records, boxes, scores, classes, class_names, scale, size):
    """({"dpool_<i>": figure} for each of ``boxes`` (input pixels), [notes about boxes the pooler missed])."""
    figures, notes = {}, []
    to_resized, to_orig = np.tile(scale, 2), np.tile(1.0 / scale, 2)
    for i, box in enumerate(boxes):
        found = match_pool_record(pool_records, box * to_resized)
        if found is None:
            notes.append(f"detection {i}: the deformable pooler did not see its box")
            continue
        pr, row = found
        roi = pr.rois[row, 1:5]
        figures[f"dpool_{i}"] = dpool_panel(
            image, box, roi_bins(roi, pr.output_size) * to_orig,
            roi_bins(roi, pr.output_size, pr.offset[row], pr.gamma) * to_orig,
            None if pr.mask is None else pr.mask[row], f"{class_name(classes[i], class_names)} {scores[i]:.2f}",
            class_color(int(classes[i])), pr.gamma, size)
    return figures, notes


def short_name(name: str) -> str:
    """Module name without the backbone prefixes ("backbone.bottom_up.res5.1.conv2" -> "res5.1.conv2")."""
    for prefix in ("backbone.bottom_up.", "backbone."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def position_grid(record, height: float, width: float, n: int = 3) -> np.ndarray:
    """Centres ([U, 2], resized-image pixels) of distinct output units of ``record`` nearest to an n x n grid
    over the image (at 1/(2n), 3/(2n), ... of each side)."""
    units = {}
    for fy in (np.arange(n) + 0.5) / n:
        for fx in (np.arange(n) + 0.5) / n:
            key, centre = nearest_unit(record, (fx * width, fy * height))
            units.setdefault(key, centre)
    return np.stack(list(units.values()))


def match_pool_record(records, box_resized: np.ndarray):
    """(record, row) of the pooled RoI equal to ``box_resized`` (within 0.5 px), or None."""
    best, best_d = None, 0.5
    for pr in records:
        if len(pr.rois) == 0:
            continue
        d = np.abs(pr.rois[:, 1:5] - box_resized[None]).max(axis=1)
        j = int(d.argmin())
        if d[j] <= best_d:
            best, best_d = (pr, j), d[j]
    return best


if __name__ == "__main__":
    sys.exit(main())
