"""ImageList: images of different sizes padded into one batch tensor, remembering each image's true size."""

from typing import List, Sequence, Tuple

from torch import Tensor
from torch.nn import functional as F


class ImageList:
    """``tensor`` ``[N, C, H, W]`` (zero-padded at the bottom and right) and ``image_sizes`` [(h_i, w_i)]."""

    def __init__(self, tensor: Tensor, image_sizes: List[Tuple[int, int]]):
        self.tensor = tensor
        self.image_sizes = image_sizes

    def __len__(self) -> int:
        return len(self.image_sizes)

    @property
    def padded_size(self) -> Tuple[int, int]:
        return (self.tensor.shape[-2], self.tensor.shape[-1])

    @staticmethod
    def from_tensors(tensors: Sequence[Tensor], size_divisibility: int = 0, pad_value: float = 0.0) -> "ImageList":
        """Pad ``[C, H_i, W_i]`` tensors to a common size, rounded up to a multiple of ``size_divisibility``."""
        if len(tensors) == 0:
            raise ValueError("ImageList.from_tensors needs at least one image")
        channels = {t.shape[0] for t in tensors}
        if any(t.dim() != 3 for t in tensors) or len(channels) != 1:
            raise ValueError(f"images must be [C, H, W] with equal C, got shapes {[tuple(t.shape) for t in tensors]}")
        image_sizes = [(t.shape[-2], t.shape[-1]) for t in tensors]  # ints (symbolic while tracing)
        max_h = max(s[0] for s in image_sizes)
        max_w = max(s[1] for s in image_sizes)
        if size_divisibility > 1:
            # ceil with non-negative operands only: ONNX's integer Div truncates, so the usual -(-x // d) would
            # floor in an exported graph (onnxruntime then padded 213 to 192, not 224)
            max_h = (max_h + size_divisibility - 1) // size_divisibility * size_divisibility
            max_w = (max_w + size_divisibility - 1) // size_divisibility * size_divisibility
        if len(tensors) == 1:
            t = tensors[0]
            batch = F.pad(t, (0, max_w - t.shape[-1], 0, max_h - t.shape[-2]), value=pad_value)[None]
        else:
            batch = tensors[0].new_full((len(tensors), tensors[0].shape[0], max_h, max_w), pad_value)
            for img, pad_img in zip(tensors, batch):
                pad_img[:, : img.shape[-2], : img.shape[-1]].copy_(img)
        return ImageList(batch.contiguous(), image_sizes)
