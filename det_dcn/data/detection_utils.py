"""Reading images and turning dataset dicts into model targets.

``read_image`` is strict on purpose: a missing, unreadable or truncated file raises ``BadDataError`` naming the
file. A truncated JPEG (no end-of-image marker) is refused, not decoded: libjpeg would grey-fill the missing part
and the model would learn from / be scored on an invented image. The training loader catches the error, logs and
skips the image; the evaluation loader marks it (det_dcn/evaluation/left_out.py) and the evaluators leave it out
of both detections and ground truth. ``image_size`` and ``check_image_file`` read only the file's header (and its
last bytes), for load-time size checks and the start-of-training check of the evaluation images.
"""

import os
from typing import List, Tuple

import cv2
import numpy as np
import torch

SUPPORTED_FORMATS = ("BGR", "RGB")
# Key of the test loader's stand-in for an image it could not read: {"image_id", "file_name", "height", "width",
# UNREADABLE_KEY: the reason} and no "image". det_dcn/evaluation/left_out.py says what evaluation makes of it.
UNREADABLE_KEY = "unreadable"


class BadDataError(ValueError):
    """A sample cannot be used (missing / unreadable / truncated image, size mismatch). Names the file."""


def _check_jpeg_complete(data: bytes, file_name: str) -> None:
    # libjpeg decodes a truncated JPEG with only a warning and grey-fills the rest, so cv2 "succeeds";
    # detect it by the missing end-of-image marker (0xFFD9). Some writers append padding after it.
    if b"\xff\xd9" not in data.rstrip(b"\x00\r\n\t ")[-32:]:
        raise BadDataError(f"Truncated JPEG (no end-of-image marker): {file_name}")


# EXIF orientations 5-8 rotate by 90 degrees: the decoded image (OpenCV applies the tag) has width and height swapped.
_EXIF_ORIENTATION, _TRANSPOSING_ORIENTATIONS = 0x0112, (5, 6, 7, 8)


def image_size(file_name: str) -> Tuple[int, int]:
    """(width, height) of the image as ``read_image`` returns it, from the file's header only (EXIF orientation
    applied). Raises ``BadDataError`` naming the file when it is missing or not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file_name) as im:
            w, h = im.size
            if im.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSING_ORIENTATIONS:
                w, h = h, w
    except FileNotFoundError as e:
        raise BadDataError(f"Image file not found: {file_name}") from e
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:  # PIL raises these for bad headers
        raise BadDataError(f"Cannot read the image header of {file_name}: {type(e).__name__}: {e}") from e
    return int(w), int(h)


def check_image_file(file_name: str, full_decode: bool = False) -> None:
    """Raise ``BadDataError`` naming the file if it cannot be read. Cheap by default (header, and for a JPEG its
    end-of-image marker); ``full_decode`` decodes it as ``read_image`` does."""
    if full_decode:
        read_image(file_name)
        return
    image_size(file_name)
    with open(file_name, "rb") as f:
        is_jpeg = f.read(2) == b"\xff\xd8"
        if is_jpeg:
            f.seek(max(os.path.getsize(file_name) - 4096, 0))
            _check_jpeg_complete(f.read(), file_name)


def read_image(file_name: str, format: str = "BGR") -> np.ndarray:
    """Read an image file into an HxWx3 uint8 array in ``format`` ("BGR" or "RGB").

    EXIF orientation is applied (OpenCV's IMREAD_COLOR does it), grayscale images are replicated to 3 channels,
    the alpha channel of 4-channel images is dropped, 16-bit images are scaled to 8 bits.
    """
    if format not in SUPPORTED_FORMATS:
        raise ValueError(f"INPUT.FORMAT must be one of {SUPPORTED_FORMATS}, got {format!r}")
    if not os.path.isfile(file_name):
        raise BadDataError(f"Image file not found: {file_name}")
    try:
        with open(file_name, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BadDataError(f"Cannot read image file {file_name}: {e}") from e
    if not data:
        raise BadDataError(f"Image file is empty: {file_name}")
    if data[:2] == b"\xff\xd8":
        _check_jpeg_complete(data, file_name)
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise BadDataError(f"Cannot decode image (not an image or corrupt): {file_name}")
    if format == "RGB":
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img)


def check_image_size(dataset_dict: dict, image: np.ndarray) -> None:
    """The annotation's height/width must match the decoded image, else boxes would land in the wrong place."""
    h, w = image.shape[:2]
    exp = (dataset_dict.get("height", h), dataset_dict.get("width", w))
    if (h, w) != tuple(exp):
        raise BadDataError(
            f"Image {dataset_dict['file_name']} is {w}x{h} (WxH) but its annotation says {exp[1]}x{exp[0]}"
        )


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 array -> 3xHxW uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def annotations_to_arrays(annotations: List[dict]) -> Tuple[np.ndarray, np.ndarray]:
    """Non-crowd annotations -> (boxes float32 [N,4] XYXY, classes int64 [N]). Crowd boxes are left out:
    they mark regions of many instances, not one object, and must not become training targets."""
    annos = [a for a in annotations if not a.get("iscrowd", 0)]
    boxes = np.asarray([a["bbox"] for a in annos], dtype=np.float32).reshape(-1, 4)
    classes = np.asarray([a["category_id"] for a in annos], dtype=np.int64).reshape(-1)
    return boxes, classes


def clip_and_filter_boxes(boxes: np.ndarray, classes: np.ndarray, height: int, width: int, min_size: float = 1e-3):
    """Clip XYXY boxes to the image and drop those whose width or height is <= ``min_size`` pixels."""
    boxes = boxes.copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    keep = ((boxes[:, 2] - boxes[:, 0]) > min_size) & ((boxes[:, 3] - boxes[:, 1]) > min_size)
    return boxes[keep], classes[keep]


def has_usable_annotation(dataset_dict: dict) -> bool:
    """True if the image has at least one non-crowd box (images without one teach the detector nothing here)."""
    return any(not a.get("iscrowd", 0) for a in dataset_dict.get("annotations", []))
