"""The exported detector's contract: one uint8 image in, boxes / scores / classes in that image's pixels out."""

from typing import Tuple

import torch
from torch import Tensor, nn

INPUT_NAMES = ("image",)
OUTPUT_NAMES = ("boxes", "scores", "classes")


class ExportableDetector(nn.Module):
    """Wraps an eval-mode detector (already made exportable) for ``torch.export`` / ONNX.

    forward(image Tensor[H, W, 3] uint8, channels in the model's INPUT.FORMAT) ->
    (boxes Tensor[N, 4] float32 XYXY in the input's pixels, scores Tensor[N] float32, classes Tensor[N] int64).
    Normalisation, the resize to INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST, detection and the mapping back all happen
    inside: the same computation as ``DefaultPredictor`` after its BGR -> INPUT.FORMAT flip.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        result = self.model.inference([{"image": image.permute(2, 0, 1)}])[0]
        return result["boxes"].float(), result["scores"].float(), result["classes"].to(torch.int64)
