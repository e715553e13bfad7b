import logging

import pytest

from engine_helpers import SHAPES_TRAIN, SHAPES_VAL


@pytest.fixture(autouse=True)
def _restore_det_dcn_logger():
    """Trainers and default_setup configure the "det_dcn" logger (handlers, no propagation); undo that after each
    test so later tests see an untouched logger, and let records reach caplog during the test."""
    logger = logging.getLogger("det_dcn")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    logger.propagate = True  # caplog listens at the root logger, whatever an earlier test module configured
    yield
    for h in list(logger.handlers):
        if h not in saved[0]:
            logger.removeHandler(h)
            h.close()
    logger.handlers[:] = saved[0]
    logger.propagate, logger.level = saved[1], saved[2]


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """8 train / 2 val generated shapes images registered as SHAPES_TRAIN / SHAPES_VAL (once per session: the
    catalog cannot unregister)."""
    from det_dcn.data import register_coco_instances, shapes

    root = str(tmp_path_factory.mktemp("engine_shapes"))
    shapes.ensure_shapes(root, {"train": 8, "val": 2}, show_progress=False, workers=1)
    for name, split in ((SHAPES_TRAIN, "train"), (SHAPES_VAL, "val")):
        register_coco_instances(name, shapes.json_path(root, split), shapes.image_dir(root, split))
    return root
