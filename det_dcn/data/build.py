"""Building the training and test data loaders from a config (the interface the engine uses)."""

import logging
import time
from typing import List, Optional, Sequence, Union

import torch

from det_dcn.utils import comm

from .catalog import DatasetCatalog, MetadataCatalog
from .coco import register_coco_from_cfg
from .detection_utils import UNREADABLE_KEY, BadDataError, check_image_file, has_usable_annotation
from .mapper import DatasetMapper
from .mixing import build_mixing
from .voc import register_voc_from_cfg
from .samplers import InferenceSampler, aspect_ratio_group_ids, resolve_seed
from .train_batches import TrainBatchDataset, TrainDataLoader

logger = logging.getLogger(__name__)


def register_custom_from_cfg(cfg) -> List[str]:
    """Register DATASETS.CUSTOM_COCO and DATASETS.CUSTOM_VOC (idempotent); returns the names registered."""
    return register_coco_from_cfg(cfg) + register_voc_from_cfg(cfg)


def get_detection_dataset_dicts(names: Union[str, Sequence[str]], filter_empty: bool = True) -> List[dict]:
    """Concatenate the dicts of registered datasets; optionally drop images without a non-crowd box."""
    if isinstance(names, str):
        names = [names]
    if len(names) == 0:
        raise ValueError("No dataset given (DATASETS.TRAIN / DATASETS.TEST is empty)")
    dicts, classes = [], None
    for name in names:
        ds = DatasetCatalog.get(name)
        if len(ds) == 0:
            raise ValueError(f"Dataset {name!r} is empty")
        c = MetadataCatalog.get(name).get("thing_classes")
        if c is not None and classes is not None and list(c) != list(classes):
            raise ValueError(f"Datasets {list(names)} have different classes: {classes} vs {c} (in {name!r})")
        classes = c if c is not None else classes
        dicts.extend(ds)
    if filter_empty:
        before = len(dicts)
        dicts = [d for d in dicts if has_usable_annotation(d)]
        if before != len(dicts):
            logger.info(f"Removed {before - len(dicts)} of {before} images without usable (non-crowd) boxes "
                        f"from {list(names)} (DATALOADER.FILTER_EMPTY_ANNOTATIONS)")
        if not dicts:
            raise ValueError(f"No image of {list(names)} has a usable box")
    return dicts


def build_detection_train_loader(cfg, mapper: Optional[DatasetMapper] = None, start_iter: int = 0,
                                 dataset_dicts: Optional[List[dict]] = None) -> TrainDataLoader:
    """Infinite loader of per-rank batches (List[dict], SOLVER.IMS_PER_BATCH // world_size dicts each).

    Data order is determined by cfg.SEED (< 0: a random seed shared across ranks), rank and world size, and
    does not depend on DATALOADER.NUM_WORKERS. ``start_iter=k`` (or ``loader.set_start_iter(k)`` before
    iterating) continues the order of an interrupted run at iteration k.
    """
    world = comm.get_world_size()
    total = cfg.SOLVER.IMS_PER_BATCH
    if total <= 0 or total % world != 0:
        raise ValueError(f"SOLVER.IMS_PER_BATCH ({total}) is the total batch over all processes and must be a "
                         f"positive multiple of the number of processes ({world})")
    if dataset_dicts is None:
        register_custom_from_cfg(cfg)
        dataset_dicts = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    if mapper is None:
        mapper = DatasetMapper.from_config(cfg, is_train=True)
    mapper = build_mixing(cfg, mapper, dataset_dicts)  # INPUT.MOSAIC / INPUT.MIXUP; the mapper itself when off
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise ValueError(f"DATALOADER.SAMPLER_TRAIN: only 'TrainingSampler' is available, got "
                         f"{cfg.DATALOADER.SAMPLER_TRAIN!r}")
    seed = resolve_seed(cfg.SEED)
    group_ids = aspect_ratio_group_ids(dataset_dicts) if cfg.DATALOADER.ASPECT_RATIO_GROUPING else None
    logger.info(f"Training data: {len(dataset_dicts)} images, {total // world} per batch per process, "
                f"data seed {seed}")
    dataset = TrainBatchDataset(dataset_dicts, mapper, total // world, seed, comm.get_rank(), world,
                                group_ids=group_ids, start_iter=start_iter)
    return TrainDataLoader(dataset, cfg.DATALOADER.NUM_WORKERS)


class _MapDataset(torch.utils.data.Dataset):
    """Test-time mapping; an image that cannot be read becomes an UNREADABLE_KEY stand-in (the evaluators leave
    it out of detections and ground truth) instead of ending the run."""

    def __init__(self, dicts, mapper):
        self.dicts, self.mapper = dicts, mapper

    def __len__(self):
        return len(self.dicts)

    def __getitem__(self, i):
        d = self.dicts[i]
        try:
            return self.mapper(d)
        except BadDataError as e:
            return {"image_id": d.get("image_id"), "file_name": d["file_name"], "height": d.get("height"),
                    "width": d.get("width"), UNREADABLE_KEY: str(e)}


def _as_list(batch):
    return batch


def build_detection_test_loader(cfg, dataset_name: str, mapper: Optional[DatasetMapper] = None,
                                num_workers: Optional[int] = None) -> torch.utils.data.DataLoader:
    """Finite loader, batch 1 (a list with one dict), each image of ``dataset_name`` on exactly one rank.
    Images are at their original size; an unreadable image yields a stand-in dict with the key ``UNREADABLE_KEY``
    (see _MapDataset) that ``inference_on_dataset`` keeps away from the model."""
    register_custom_from_cfg(cfg)
    dicts = get_detection_dataset_dicts(dataset_name, filter_empty=False)
    if mapper is None:
        mapper = DatasetMapper.from_config(cfg, is_train=False)
    workers = cfg.DATALOADER.NUM_WORKERS if num_workers is None else num_workers
    return torch.utils.data.DataLoader(
        _MapDataset(dicts, mapper),
        sampler=InferenceSampler(len(dicts)),
        batch_size=1,
        num_workers=workers,
        collate_fn=_as_list,
        generator=torch.Generator().manual_seed(0),  # leaves the global torch RNG untouched (see train_batches)
    )


FULL_DECODE_MAX_IMAGES = 500  # up to this many images the check decodes each; above, header + JPEG end marker


def check_evaluation_images(cfg) -> List[str]:
    """Check that the images of DATASETS.TEST can be read, at the start of training, so a broken file is
    reported in the first seconds rather than at the first evaluation. Returns the unreadable files (each
    warned about, naming the file); evaluation will leave them out (det_dcn/evaluation/left_out.py)."""
    register_custom_from_cfg(cfg)
    bad = []
    for name in cfg.DATASETS.TEST:
        if name not in DatasetCatalog:  # a trainer subclass may build its test loader without the catalog
            continue
        start = time.perf_counter()
        files = [d["file_name"] for d in get_detection_dataset_dicts(name, filter_empty=False)]
        full = len(files) <= FULL_DECODE_MAX_IMAGES
        for f in files:
            try:
                check_image_file(f, full_decode=full)
            except BadDataError as e:
                logger.warning(f"Evaluation dataset {name!r}: {e}; it will be left out of evaluation")
                bad.append(f)
        logger.info(f"Checked the {len(files)} images of evaluation dataset {name!r} "
                    f"({'full decode' if full else 'header and JPEG end marker'}) in {time.perf_counter() - start:.1f} s: "
                    f"{sum(f in bad for f in files)} unreadable")
    return bad
