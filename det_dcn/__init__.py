"""det_dcn: Faster R-CNN with deformable / dilated convolution and deformable RoI pooling."""

__version__ = "0.1.0"
