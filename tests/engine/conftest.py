import logging

import pytest


@pytest.fixture(autouse=True)
def _restore_det_dcn_logger():
    """Trainers and default_setup configure the "det_dcn" logger (handlers, no propagation); undo that after each
    test so later tests (caplog) see an untouched logger."""
    logger = logging.getLogger("det_dcn")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    for h in list(logger.handlers):
        if h not in saved[0]:
            logger.removeHandler(h)
            h.close()
    logger.handlers[:] = saved[0]
    logger.propagate, logger.level = saved[1], saved[2]
