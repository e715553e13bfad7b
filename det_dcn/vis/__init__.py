"""det_dcn.vis: pictures of detections and of where the deformable layers sample (for tools/demo.py and
tools/visualize_offsets.py). The top floor: it may import every other det_dcn package, none imports it."""
