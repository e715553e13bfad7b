"""det_dcn.testing: helpers for tests and benchmarks, not part of the model API.

- :func:`calibrate_frozen_bn`, :func:`start_as_plain_model`: make randomly initialised models behave like trained
  ones where it matters for a test or a timing (activations of a sane scale; variants computing the plain model's
  outputs, so they are timed on the same workload);
- :func:`time_interleaved`: medians of interleaved runs with torch.utils.benchmark's clock and Measurements.
"""

from .models import calibrate_frozen_bn, start_as_plain_model
from .timing import time_interleaved

__all__ = ["calibrate_frozen_bn", "start_as_plain_model", "time_interleaved"]
