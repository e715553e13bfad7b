#!/usr/bin/env python
r"""Run a trained det_dcn model on images (and optionally a video) and write pictures and JSON detections.

    python tools/demo.py --config-file configs/quickstart/faster_rcnn_shapes.yaml \
        --input images/ "more/*.jpg" one.png --output demo_out [--confidence-threshold 0.5] \
        [--video-input clip.mp4] MODEL.WEIGHTS output/quickstart/model_final.pth [KEY VALUE ...]

Per image ``NAME.ext`` it writes ``DIR/NAME.jpg`` (``.png`` for png inputs) with boxes, class names and scores, and
``DIR/NAME.json``: {"file_name", "height", "width", "box_mode": "XYXY_ABS", "boxes", "scores", "classes",
"class_names"} with boxes in the input image's pixels. Files are written atomically. Inputs that cannot be read
are reported by name and skipped; the exit code is 1 only when nothing could be processed.
KEY VALUE pairs override the config (e.g. MODEL.WEIGHTS output/model_final.pth MODEL.DEVICE cpu); they may come
after the flags or between them, and a config key is never taken for an input. Without MODEL.WEIGHTS the demo
refuses to run unless --allow-random-weights is given. The output folder is checked before the model is loaded.
"""

import argparse
import os
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from det_dcn.config.overrides import parse_args_with_overrides
from det_dcn.data import read_image
from det_dcn.utils.atomic_io import atomic_imwrite, atomic_write_json, ensure_output_dir
from det_dcn.vis.class_names import class_names_from_cfg
from det_dcn.vis.image_inputs import expand_inputs
from det_dcn.vis.tool_args import add_common_args, load_tool_cfg
from det_dcn.vis.visualizer import class_name, draw_detections, upscale_for_display


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE", help="config YAML (may use _BASE_)")
    p.add_argument("--input", nargs="+", default=[], metavar="PATH",
                   help="image files, folders (their images) or glob patterns (quote them)")
    p.add_argument("--video-input", default=None, metavar="FILE", help="a video file to run on, frame by frame")
    p.add_argument("--output", required=True, metavar="DIR", help="folder for pictures and JSON files")
    p.add_argument("--confidence-threshold", type=float, default=0.5,
                   help="keep detections with score >= this (also sets MODEL.ROI_HEADS.SCORE_THRESH_TEST)")
    p.add_argument("--min-picture-size", type=int, default=256,
                   help="pictures of smaller images are upscaled by an integer factor so labels stay readable; "
                        "0 keeps the input size")
    p.add_argument("--onnx", default=None, metavar="FILE.onnx",
                   help="run this exported file (tools/export.py) with onnxruntime instead of the PyTorch model; "
                        "the config still gives the class names")
    return add_common_args(p)


def setup_cfg(args: argparse.Namespace):
    """Config from ``--config-file`` and overrides, with the score threshold of ``--confidence-threshold``."""
    if not 0.0 <= args.confidence_threshold <= 1.0:
        raise ValueError(f"--confidence-threshold must be in [0, 1], got {args.confidence_threshold}")
    if args.onnx:
        args.allow_random_weights = True  # the weights are in the ONNX file, MODEL.WEIGHTS is not used
    return load_tool_cfg(args, args.confidence_threshold)


def unique_stems(files: Sequence[str]) -> List[str]:
    """Output names (without extension) for ``files``: the file stem, made unique with _2, _3 ... on clashes."""
    used, out = set(), []
    for f in files:
        stem = os.path.splitext(os.path.basename(f))[0] or "image"
        name, i = stem, 1
        while name in used:
            i += 1
            name = f"{stem}_{i}"
        used.add(name)
        out.append(name)
    return out


def predictions_to_numpy(pred: Dict[str, torch.Tensor], threshold: float) -> Tuple[np.ndarray, ...]:
    """(boxes [K, 4], scores [K], classes [K]) on the CPU, scores >= ``threshold``, highest score first."""
    boxes = pred["boxes"].detach().float().cpu().numpy().reshape(-1, 4)
    scores = pred["scores"].detach().float().cpu().numpy().reshape(-1)
    classes = pred["classes"].detach().cpu().numpy().reshape(-1).astype(np.int64)
    keep = np.nonzero(scores >= threshold)[0]
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    return boxes[keep], scores[keep], classes[keep]


def detections_record(boxes, scores, classes, class_names, height: int, width: int, **extra) -> dict:
    """The JSON-able record of one image's (or frame's) detections."""
    return {
        **extra,
        "height": int(height),
        "width": int(width),
        "box_mode": "XYXY_ABS",
        "boxes": [[round(float(v), 2) for v in b] for b in boxes],
        "scores": [round(float(s), 4) for s in scores],
        "classes": [int(c) for c in classes],
        "class_names": [class_name(c, class_names) for c in classes],
    }


def run_images(predictor, files, out_dir, class_names, threshold, min_size) -> Tuple[int, int, list]:
    """Process ``files``; returns (images done, total detections, [(file, reason)] skipped)."""
    done, total, skipped = 0, 0, []
    for path, stem in zip(tqdm(files, desc="demo", unit="img", dynamic_ncols=True), unique_stems(files)):
        try:
            image = read_image(path)
        except ValueError as e:
            skipped.append((path, str(e)))
            tqdm.write(f"[demo] skipping '{path}': {e}")
            continue
        boxes, scores, classes = predictions_to_numpy(predictor(image), threshold)
        picture, factor = upscale_for_display(image, min_size)
        picture = draw_detections(picture, boxes, scores, classes, class_names, scale=factor)
        ext = ".png" if path.lower().endswith(".png") else ".jpg"
        atomic_imwrite(os.path.join(out_dir, stem + ext), picture)
        record = detections_record(boxes, scores, classes, class_names, image.shape[0], image.shape[1],
                                   file_name=path, picture=stem + ext, picture_scale=factor)
        atomic_write_json(os.path.join(out_dir, stem + ".json"), record)
        done += 1
        total += len(boxes)
    return done, total, skipped


def run_video(predictor, path, out_dir, class_names, threshold) -> int:
    """Process every frame of the video ``path``: DIR/<stem>.mp4 with drawn detections and DIR/<stem>.json with
    one record per frame. Returns the number of frames; raises ValueError naming the file when it cannot be read."""
    from det_dcn.vis.video import VideoReader, VideoWriter

    reader = VideoReader(path)
    stem = os.path.splitext(os.path.basename(path))[0] or "video"
    writer = None
    frames = []
    for i, frame in enumerate(tqdm(reader, total=len(reader) or None, desc="video", unit="frame",
                                   dynamic_ncols=True)):
        boxes, scores, classes = predictions_to_numpy(predictor(frame), threshold)
        if writer is None:
            writer = VideoWriter(os.path.join(out_dir, stem + ".mp4"), reader.fps, (frame.shape[1], frame.shape[0]))
        writer.write(draw_detections(frame, boxes, scores, classes, class_names))
        frames.append(detections_record(boxes, scores, classes, class_names, frame.shape[0], frame.shape[1],
                                        frame=i))
    if writer is None:
        raise ValueError(f"Video file '{path}' has no readable frame")
    writer.close()
    atomic_write_json(os.path.join(out_dir, stem + ".json"),
                      {"file_name": path, "fps": reader.fps, "video": stem + ".mp4", "frames": frames})
    return len(frames)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args_with_overrides(get_parser(), argv)
    if not args.input and not args.video_input:
        print("[demo] error: give --input PATH [PATH ...] and/or --video-input FILE", file=sys.stderr)
        return 2
    try:
        cfg = setup_cfg(args)
        ensure_output_dir(args.output)
    except ValueError as e:
        print(f"[demo] error: {e}", file=sys.stderr)
        return 2
    if not cfg.MODEL.WEIGHTS and not args.onnx:
        print("[demo] warning: MODEL.WEIGHTS is empty (--allow-random-weights): the model is randomly initialised",
              file=sys.stderr)

    files, problems = expand_inputs(args.input)
    for entry, reason in problems:
        print(f"[demo] skipping '{entry}': {reason}", file=sys.stderr)

    from det_dcn.engine import DefaultPredictor

    start = time.perf_counter()
    if args.onnx:
        from det_dcn.deploy import OnnxPredictor

        onnx_predictor = OnnxPredictor(args.onnx)
        predictor = lambda image: {k: torch.from_numpy(v) for k, v in onnx_predictor(image).items()}  # noqa: E731
    else:
        predictor = DefaultPredictor(cfg)
    class_names = class_names_from_cfg(cfg)
    done, total, skipped = run_images(predictor, files, args.output, class_names, args.confidence_threshold,
                                      args.min_picture_size)
    skipped = problems + skipped
    frames = 0
    if args.video_input:
        try:
            frames = run_video(predictor, args.video_input, args.output, class_names, args.confidence_threshold)
        except ValueError as e:
            skipped.append((args.video_input, str(e)))
            print(f"[demo] skipping '{args.video_input}': {e}", file=sys.stderr)

    elapsed = time.perf_counter() - start
    print(f"[demo] {done} of {len(files)} image(s) processed, {total} detection(s) with score >= "
          f"{args.confidence_threshold}" + (f", {frames} video frame(s)" if args.video_input else "")
          + f", in {elapsed:.1f} s; results in {args.output}")
    if skipped:
        print(f"[demo] {len(skipped)} input(s) skipped:")
        for entry, reason in skipped:
            print(f"  {entry}: {reason}")
    return 0 if (done + frames) > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
