"""An independent, deliberately naive deformable RoI pooling: one Python loop iteration per bilinear sample,
written from mmcv's description (not from det_dcn's code). Tiny inputs only."""

import math


def _bilinear(feat, y, x):
    """feat [C, H, W]; torchvision/mmcv rules: 0 outside [-1, H] x [-1, W], clamped onto the border inside."""
    _, height, width = feat.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return feat.new_zeros(feat.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * feat[:, y_low, x_low] + hy * lx * feat[:, y_low, x_high]
            + ly * hx * feat[:, y_high, x_low] + ly * lx * feat[:, y_high, x_high])


def naive_deform_roi_pool(input, rois, offset, output_size, spatial_scale, sampling_ratio, gamma):
    """input [N, C, H, W], rois [R, 5], offset [R, 2, PH, PW] or None -> [R, C, PH, PW] (float64)."""
    ph_n, pw_n = output_size
    out = input.new_zeros(rois.shape[0], input.shape[1], ph_n, pw_n)
    for r, roi in enumerate(rois.tolist()):
        feat = input[int(roi[0])]
        x1, y1 = roi[1] * spatial_scale - 0.5, roi[2] * spatial_scale - 0.5
        x2, y2 = roi[3] * spatial_scale - 0.5, roi[4] * spatial_scale - 0.5
        roi_w, roi_h = x2 - x1, y2 - y1
        bin_w, bin_h = roi_w / pw_n, roi_h / ph_n
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / ph_n)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / pw_n)
        count = max(grid_h * grid_w, 1)
        for ph in range(ph_n):
            for pw in range(pw_n):
                dx = dy = 0.0
                if offset is not None:
                    dx = gamma * roi_w * float(offset[r, 0, ph, pw].detach())
                    dy = gamma * roi_h * float(offset[r, 1, ph, pw].detach())
                acc = input.new_zeros(input.shape[1])
                for iy in range(grid_h):
                    y = y1 + dy + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                    for ix in range(grid_w):
                        x = x1 + dx + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                        acc = acc + _bilinear(feat, y, x)
                out[r, :, ph, pw] = acc / count
    return out
