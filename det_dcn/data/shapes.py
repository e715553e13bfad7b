"""The built-in synthetic detection dataset "shapes", written in standard COCO layout.

Six classes of filled shapes (circle, ellipse, triangle, rectangle, star, cross) drawn with OpenCV at varied
scales, aspect ratios, rotations and colours on textured backgrounds (gradients, stripes, checkerboards,
low-frequency noise), with clutter that is not an object (open polylines, wavy strokes, dot clusters, soft blobs)
and partial occlusion: later objects are drawn over earlier ones, each object keeps at least 60% of its pixels
visible, and its box is the box of its visible pixels. Circle vs ellipse and rectangle vs square-ish shapes make
geometry matter; sizes from ~12 px to ~2/3 of the image side make scale matter.

Layout: <root>/annotations/instances_{train,val}.json, <root>/{train,val}/NNNNNN.png. PNG (lossless) so a seed
always gives the same bytes. Generate with ``python -m det_dcn.data.shapes --root DIR --num-train N --num-val M``
or let ``DatasetCatalog.get("shapes_train")`` generate it on first use (see det_dcn/data/builtin.py).
"""

import argparse
import contextlib
import glob
import json
import os
import shutil
import time
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from det_dcn.utils.atomic_io import atomic_write_json

CLASSES = ("circle", "ellipse", "triangle", "rectangle", "star", "cross")
SPLITS = ("train", "val")
DEFAULT_NUM = {"train": 3000, "val": 300}
DEFAULT_SEED = 0
IMAGE_SIDE_RANGE = (160, 192)  # height and width drawn independently: mild aspect variation
MAX_OBJECTS = 6
MIN_MINOR_SIDE = 11.0  # px: the narrow side of an object before rotation, so no object is tinier than ~12 px
MAX_HIDDEN = 0.4  # an object may lose at most this fraction of its pixels to later objects
_SUB = 4  # cv2 fixed-point bits for sub-pixel polygon vertices
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # fast; higher levels gain ~5% size at 2x time


# ----------------------------------------------------------------------------------------------------------------
# Object outlines: polygons centred at the origin, before rotation; size = longest side in pixels.
# ----------------------------------------------------------------------------------------------------------------
def _ellipse_pts(a: float, b: float, n: int = 40) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([a * np.cos(t), b * np.sin(t)], axis=1)


def _shape_polygon(cls: str, size: float, rng: np.random.Generator) -> np.ndarray:
    if cls == "circle":
        return _ellipse_pts(size / 2, size / 2)
    if cls == "ellipse":
        aspect = rng.uniform(1.7, 2.8)  # clearly not a circle
        size = max(size, MIN_MINOR_SIDE * aspect)
        return _ellipse_pts(size / 2, size / 2 / aspect)
    if cls == "rectangle":
        aspect = rng.uniform(1.0, 2.6)
        size = max(size, MIN_MINOR_SIDE * aspect)
        w, h = size / 2, size / 2 / aspect
        return np.array([[-w, -h], [w, -h], [w, h], [-w, h]])
    if cls == "triangle":
        # An equilateral triangle with jittered vertices: varied but never a sliver.
        ang = np.deg2rad([90, 210, 330]) + rng.uniform(-0.25, 0.25, 3)
        rad = size / 2 * rng.uniform(0.8, 1.1, 3)
        return np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    if cls == "star":
        inner = rng.uniform(0.38, 0.5)
        t = np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, size / 2, size / 2 * inner)
        return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    if cls == "cross":
        a, b = size / 2, max(size * rng.uniform(0.13, 0.2), 3.0)
        return np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b], [-a, b],
                         [-a, -b], [-b, -b]])
    raise ValueError(f"Unknown shapes class {cls!r}; classes are {CLASSES}")


def _rotate(pts: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return pts @ np.array([[c, s], [-s, c]])


def _fill(img: np.ndarray, pts: np.ndarray, color, line_type=cv2.LINE_AA) -> None:
    cv2.fillPoly(img, [np.round(pts * (1 << _SUB)).astype(np.int32)], color, line_type, shift=_SUB)


# ----------------------------------------------------------------------------------------------------------------
# Backgrounds and clutter
# ----------------------------------------------------------------------------------------------------------------
def _random_color(rng: np.random.Generator, sat=(0.3, 1.0), val=(0.3, 1.0)) -> np.ndarray:
    hsv = np.uint8([[[rng.integers(0, 180), rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    c1 = _random_color(rng, sat=(0.0, 0.6), val=(0.2, 0.9))
    c2 = np.clip(c1 + rng.uniform(-60, 60, 3), 0, 255)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = rng.integers(4)
    ang = rng.uniform(0, np.pi)
    proj = xx * np.cos(ang) + yy * np.sin(ang)
    if kind == 0:  # linear gradient
        t = (proj - proj.min()) / max(proj.max() - proj.min(), 1e-6)
    elif kind == 1:  # stripes, soft or hard
        t = 0.5 + 0.5 * np.sin(proj * 2 * np.pi / rng.uniform(6, 24))
        if rng.random() < 0.5:
            t = (t > 0.5).astype(np.float32)
    elif kind == 2:  # checkerboard
        cell = rng.uniform(6, 24)
        t = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2).astype(np.float32)
    else:  # low-frequency noise: a small random grid upsampled smoothly
        g = int(rng.integers(4, 14))
        t = cv2.resize(rng.random((g, g)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        t = np.clip(t, 0, 1)
    return c1 * (1 - t[..., None]) + c2 * t[..., None]


def _clutter(img: np.ndarray, rng: np.random.Generator) -> None:
    """Distractors: thin open strokes, wavy lines, dot clusters and soft blobs -- never filled sharp shapes."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(0, 5))):
        color = tuple(float(v) for v in _random_color(rng))
        kind = rng.integers(4)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        if kind == 0:  # open polyline
            n = int(rng.integers(2, 6))
            pts = np.stack([cx + rng.uniform(-35, 35, n), cy + rng.uniform(-35, 35, n)], axis=1)
            cv2.polylines(img, [np.round(pts * (1 << _SUB)).astype(np.int32)], False, color,
                          int(rng.integers(1, 3)), cv2.LINE_AA, shift=_SUB)
        elif kind == 1:  # wavy stroke
            t = np.linspace(-1, 1, 30)
            length, amp, freq, ang = rng.uniform(20, 70), rng.uniform(2, 6), rng.uniform(1, 3), rng.uniform(0, np.pi)
            pts = _rotate(np.stack([t * length / 2, amp * np.sin(t * freq * np.pi)], axis=1), ang) + [cx, cy]
            cv2.polylines(img, [np.round(pts * (1 << _SUB)).astype(np.int32)], False, color, 1, cv2.LINE_AA,
                          shift=_SUB)
        elif kind == 2:  # dot cluster
            for _ in range(int(rng.integers(4, 12))):
                p = (int(cx + rng.normal(0, 10)), int(cy + rng.normal(0, 10)))
                cv2.circle(img, p, int(rng.integers(1, 3)), color, -1, cv2.LINE_AA)
        else:  # soft blob: a few overlapping small discs, blurred into one irregular smudge
            x0, y0 = int(max(cx - 16, 0)), int(max(cy - 16, 0))
            patch = img[y0:y0 + 32, x0:x0 + 32]
            mask = np.zeros(patch.shape[:2], np.float32)
            for _ in range(int(rng.integers(3, 7))):
                p = (int(16 + rng.normal(0, 5)), int(16 + rng.normal(0, 5)))
                cv2.circle(mask, p, int(rng.integers(2, 5)), 1.0, -1)
            mask = cv2.GaussianBlur(mask, (0, 0), 2.0)[..., None] * rng.uniform(0.4, 0.8)
            patch[:] = patch * (1 - mask) + np.asarray(color, np.float32) * mask


# ----------------------------------------------------------------------------------------------------------------
# One image
# ----------------------------------------------------------------------------------------------------------------
def render_image(rng: np.random.Generator) -> Tuple[np.ndarray, List[dict]]:
    """Draw one image; returns (HxWx3 uint8 BGR, [{"bbox": [x, y, w, h], "category_id": 1-based, "area"}])."""
    h, w = (int(rng.integers(IMAGE_SIDE_RANGE[0], IMAGE_SIDE_RANGE[1] + 1)) for _ in range(2))
    img = _background(h, w, rng)
    _clutter(img, rng)

    labels = np.full((h, w), -1, np.int16)  # index of the object on top at each pixel
    full_area: List[int] = []
    classes: List[int] = []
    want = int(rng.integers(1, MAX_OBJECTS + 1))
    visible = np.zeros(MAX_OBJECTS, np.int64)  # visible pixels per placed object, kept up to date
    for _ in range(want * 6):  # placement attempts
        if len(classes) == want:
            break
        cls = int(rng.integers(len(CLASSES)))
        max_size = 0.65 * min(h, w)
        size = float(np.exp(rng.uniform(np.log(14), np.log(max_size))))
        pts = _rotate(_shape_polygon(CLASSES[cls], size, rng), rng.uniform(0, 2 * np.pi))
        lo, hi = pts.min(0), pts.max(0)
        if np.any(hi - lo > [w - 2, h - 2]):
            continue
        pts = pts + [rng.uniform(-lo[0] + 1, w - 1 - hi[0]), rng.uniform(-lo[1] + 1, h - 1 - hi[1])]
        mask = np.zeros((h, w), np.uint8)
        _fill(mask, pts, 1, cv2.LINE_8)
        m = mask.astype(bool)
        area = int(np.count_nonzero(m))
        if area < 40:
            continue
        # Reject a placement that would hide too much of an earlier object.
        covered = np.bincount(labels[m].astype(np.int64) + 1, minlength=len(classes) + 1)[1:]
        if np.any(visible[: len(classes)] - covered < (1 - MAX_HIDDEN) * np.asarray(full_area, np.float64)):
            continue
        bg = img[m].mean(0)
        color = _random_color(rng)
        for _ in range(8):  # keep the object visibly different from what is under it
            if np.abs(color - bg).sum() >= 100:
                break
            color = _random_color(rng)
        else:
            color = 255.0 - bg
        _fill(img, pts, tuple(float(v) for v in color))
        if rng.random() < 0.3:  # an outline in a darker/lighter tone
            edge = tuple(float(v) for v in np.clip(color * rng.choice([0.5, 1.5]), 0, 255))
            cv2.polylines(img, [np.round(pts * (1 << _SUB)).astype(np.int32)], True, edge, 1, cv2.LINE_AA,
                          shift=_SUB)
        labels[m] = len(classes)
        visible[: len(classes)] -= covered
        visible[len(classes)] = area
        full_area.append(area)
        classes.append(cls)

    if rng.random() < 0.5:  # mild sensor noise
        img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(1, 5))
    img = np.clip(img + 0.5, 0, 255).astype(np.uint8)

    annos = []
    for i, cls in enumerate(classes):
        ys, xs = np.nonzero(labels == i)
        x0, y0 = int(xs.min()), int(ys.min())
        bw, bh = int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1
        annos.append({"bbox": [x0, y0, bw, bh], "category_id": cls + 1, "area": int(len(xs))})
    return img, annos


# ----------------------------------------------------------------------------------------------------------------
# Splits on disk
# ----------------------------------------------------------------------------------------------------------------
def json_path(root: str, split: str) -> str:
    return os.path.join(root, "annotations", f"instances_{split}.json")


def image_dir(root: str, split: str) -> str:
    return os.path.join(root, split)


def _render_chunk(args) -> list:
    """Render and write images ``indices`` of a split; returns [(index, file name, (h, w), annotations)]."""
    seed, split_id, indices, out_dir = args
    out = []
    for i in indices:
        img, annos = render_image(np.random.default_rng([seed, split_id, i]))
        name = f"{i:06d}.png"
        ok, buf = cv2.imencode(".png", img, _PNG_PARAMS)
        if not ok:
            raise RuntimeError(f"OpenCV failed to encode {name}")
        buf.tofile(os.path.join(out_dir, name))
        out.append((i, name, img.shape[:2], annos))
    return out


def generate_split(root: str, split: str, num_images: int, seed: int = DEFAULT_SEED, progress=None,
                   workers: int = 1) -> str:
    """Write ``num_images`` images and the annotation JSON of ``split``; returns the JSON path.

    Images go to a temporary folder renamed into place, then the JSON is written (temp file + rename): the JSON
    is the "done" marker, so a killed run never leaves a split that looks complete. Each image has its own
    generator seeded by (seed, split, index): the bytes do not depend on ``workers`` (processes used).
    """
    if split not in SPLITS:
        raise ValueError(f"shapes split must be one of {SPLITS}, got {split!r}")
    if not isinstance(num_images, int) or num_images <= 0:
        raise ValueError(f"shapes: number of {split} images must be a positive int, got {num_images!r}")
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    tmp_dir = os.path.join(root, f".{split}.tmp.{os.getpid()}")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(tmp_dir)
    split_id = SPLITS.index(split)
    chunks = [(seed, split_id, range(i, min(i + 64, num_images)), tmp_dir) for i in range(0, num_images, 64)]
    images, annotations = [], []
    pool = None
    if workers > 1 and len(chunks) > 1:
        import multiprocessing

        pool = multiprocessing.get_context("fork").Pool(min(workers, len(chunks)))
    try:
        results = pool.imap(_render_chunk, chunks) if pool else map(_render_chunk, chunks)
        for chunk in results:  # in order, so ids do not depend on the number of workers
            for i, name, (h, w), annos in chunk:
                images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
                for a in annos:
                    annotations.append(dict(a, id=len(annotations) + 1, image_id=i + 1, iscrowd=0))
            if progress is not None:
                progress.update(len(chunk))
    finally:
        if pool:
            pool.close()
            pool.join()
    final_dir = image_dir(root, split)
    shutil.rmtree(final_dir, ignore_errors=True)  # a leftover of a killed run (its JSON was never written)
    os.rename(tmp_dir, final_dir)
    coco = {
        "info": {"description": f"det_dcn shapes, split {split}, seed {seed}", "num_images": num_images},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": c, "supercategory": "shape"} for i, c in enumerate(CLASSES)],
    }
    atomic_write_json(json_path(root, split), coco, compact=True)
    return json_path(root, split)


@contextlib.contextmanager
def _file_lock(path: str):
    """Exclusive inter-process lock (fcntl.flock): two processes (e.g. DDP ranks) never generate at once."""
    import fcntl

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def default_workers() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def ensure_shapes(root: str, num: Optional[Dict[str, int]] = None, seed: int = DEFAULT_SEED,
                  splits=SPLITS, show_progress: bool = True, workers: Optional[int] = None) -> None:
    """Generate the missing splits under ``root`` (complete ones are left alone), under a lock file."""
    num = {**DEFAULT_NUM, **(num or {})}
    missing = [s for s in splits if not os.path.isfile(json_path(root, s))]
    if not missing:
        return
    os.makedirs(root, exist_ok=True)
    with _file_lock(os.path.join(root, ".generate.lock")):
        missing = [s for s in splits if not os.path.isfile(json_path(root, s))]  # another process may be done
        if not missing:
            return
        for s in missing:  # temporary folders of killed runs (any pid); we hold the lock, nobody else writes
            for leftover in glob.glob(os.path.join(root, f".{s}.tmp.*")):
                shutil.rmtree(leftover, ignore_errors=True)
        from tqdm import tqdm

        start = time.perf_counter()
        with tqdm(total=sum(num[s] for s in missing), desc=f"Generating shapes dataset in {root}",
                  disable=not show_progress, mininterval=1.0, unit="img") as bar:
            for s in missing:
                generate_split(root, s, num[s], seed, progress=bar,
                               workers=default_workers() if workers is None else workers)
        if show_progress:
            print(f"shapes: generated {', '.join(f'{num[s]} {s}' for s in missing)} images in "
                  f"{time.perf_counter() - start:.1f} s under {root}", flush=True)


def save_montage(root: str, split: str, out_path: str, n: int = 8, cols: int = 4, scale: float = 1.5) -> None:
    """A grid of the first ``n`` images of a split with their boxes and class names, for a visual check."""
    with open(json_path(root, split)) as f:
        coco = json.load(f)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_img: Dict[int, list] = {}
    for a in coco["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    side = int(round(IMAGE_SIDE_RANGE[1] * scale))
    tiles = []
    for im in coco["images"][:n]:
        img = cv2.imread(os.path.join(image_dir(root, split), im["file_name"]))
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        for a in by_img.get(im["id"], []):
            x, y, w, h = (int(round(v * scale)) for v in a["bbox"])
            cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), (0, 255, 0), 1)
            cv2.putText(img, names[a["category_id"]], (x + 2, max(y - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(img, names[a["category_id"]], (x + 2, max(y - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        (255, 255, 255), 1, cv2.LINE_AA)
        tile = np.full((side + 4, side + 4, 3), 255, np.uint8)
        tile[2:2 + img.shape[0], 2:2 + img.shape[1]] = img
        tiles.append(tile)
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[i:i + cols], axis=1) for i in range(0, len(tiles), cols)]
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    cv2.imwrite(out_path, np.concatenate(rows, axis=0), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Generate the det_dcn 'shapes' dataset in COCO layout.")
    p.add_argument("--root", required=True, help="output folder (the built-in datasets use $DET_DCN_DATASETS/shapes)")
    p.add_argument("--num-train", type=int, default=DEFAULT_NUM["train"])
    p.add_argument("--num-val", type=int, default=DEFAULT_NUM["val"])
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--workers", type=int, default=None, help="processes (default: up to 4, one per core)")
    p.add_argument("--force", action="store_true", help="regenerate even if the splits exist")
    p.add_argument("--montage", default="", help="also write a picture of samples with their boxes here")
    args = p.parse_args(argv)
    if args.force:
        for s in SPLITS:
            if os.path.isfile(json_path(args.root, s)):
                os.remove(json_path(args.root, s))
    ensure_shapes(args.root, {"train": args.num_train, "val": args.num_val}, args.seed, workers=args.workers)
    if args.montage:
        save_montage(args.root, "val", args.montage)
        print(f"montage written to {args.montage}")


if __name__ == "__main__":
    main()
