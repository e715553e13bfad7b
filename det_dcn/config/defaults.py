"""Every config key det_dcn knows, with its default and a one-line comment.

Key names follow detectron2 so its users feel at home; keys detectron2 lacks (deformable pooling, multi-grid
dilation, the log period, ...) are marked "det_dcn:". Where a key exists in detectron2 its default is detectron2's
(except MODEL.DEVICE: "auto" instead of "cuda"), so a detectron2 config file that relies on a default means the same
thing here; det_dcn's own configs name what they use. detectron2 keys of parts det_dcn does not have are at the end:
accepted while their part is off (see det_dcn/config/compat.py).
"""

from yacs.config import CfgNode as CN

_C = CN()
_C.VERSION = 2  # detectron2's config version; det_dcn reads configs of version 2

# ---------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------
_C.MODEL = CN()
# "auto" picks "cuda" when a GPU is visible, else "cpu"; "cpu", "cuda", "cuda:1" are taken as given.
_C.MODEL.DEVICE = "auto"
_C.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
# A det_dcn checkpoint (or one converted by tools/convert_weights.py) to initialise from; "" trains from scratch.
_C.MODEL.WEIGHTS = ""
# Per-channel mean and std in INPUT.FORMAT channel order, on the 0-255 pixel scale.
# Defaults are ImageNet statistics in BGR order with std 1 (caffe / detectron2 style).
_C.MODEL.PIXEL_MEAN = [103.530, 116.280, 123.675]
_C.MODEL.PIXEL_STD = [1.0, 1.0, 1.0]

_C.MODEL.BACKBONE = CN()
# "build_resnet_backbone" (a bare ResNet: C4 / DC5 layouts) or "build_resnet_fpn_backbone" (ResNet + FPN, P2-P6).
_C.MODEL.BACKBONE.NAME = "build_resnet_backbone"
# Freeze the stem (1) and the first FREEZE_AT - 1 stages; 0 trains everything.
_C.MODEL.BACKBONE.FREEZE_AT = 2

_C.MODEL.RESNETS = CN()
_C.MODEL.RESNETS.DEPTH = 50  # 18, 34 (basic blocks), 50, 101 (bottlenecks)
_C.MODEL.RESNETS.OUT_FEATURES = ["res4"]  # any of "stem", "res2", "res3", "res4", "res5"
_C.MODEL.RESNETS.NUM_GROUPS = 1  # 1 = ResNet, >1 = ResNeXt
_C.MODEL.RESNETS.WIDTH_PER_GROUP = 64  # bottleneck width of res2 per group
# "FrozenBN", "BN", "SyncBN", "GN" or "" (no norm).
_C.MODEL.RESNETS.NORM = "FrozenBN"
# True: stride 2 in the 1x1 conv of a bottleneck (caffe / MSRA weights); False: in the 3x3 (pytorch / torchvision).
_C.MODEL.RESNETS.STRIDE_IN_1X1 = True
# 1 or 2: res5 with dilation 2 keeps stride 16 (the "DC5" layout).
_C.MODEL.RESNETS.RES5_DILATION = 1
# det_dcn: per-block dilation multipliers in res5, e.g. [1, 2, 4] (hybrid dilated convolution against gridding);
# [] means 1 for every block. Its length must equal the number of res5 blocks.
_C.MODEL.RESNETS.RES5_MULTI_GRID = []
# det_dcn: dilation rates of an ASPP (DeepLab v3: 1x1 + one dilated 3x3 per rate + image pooling) appended to res5
# as a residual block that starts as the identity, e.g. [2, 4, 6] with the DC5 layout; [] (default): none.
_C.MODEL.RESNETS.RES5_ASPP_RATES = []
_C.MODEL.RESNETS.RES2_OUT_CHANNELS = 256  # 64 for depth 18/34
_C.MODEL.RESNETS.STEM_OUT_CHANNELS = 64
# Deformable 3x3 convolutions per stage (res2, res3, res4, res5).
_C.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False, False, False, False]
_C.MODEL.RESNETS.DEFORM_MODULATED = False  # True: modulated DCNv2; False: DCNv1
_C.MODEL.RESNETS.DEFORM_NUM_GROUPS = 1  # deformable groups: channel groups that share one offset field
# det_dcn (mmdetection's DropBlock plugin; Ghiasi et al. 2018): after every block of the chosen stages, zero random
# BLOCK_SIZE x BLOCK_SIZE squares of each channel in training with probability PROB (0: off), which rises linearly
# from 0 over the first WARMUP_ITERS iterations. A regulariser (on the raccoon recipe it did not help:
# docs/custom_data.md).
_C.MODEL.RESNETS.DROPBLOCK = CN()
_C.MODEL.RESNETS.DROPBLOCK.PROB = 0.0
_C.MODEL.RESNETS.DROPBLOCK.BLOCK_SIZE = 3  # odd; in feature-map cells (3 cells of res4 = 48 pixels)
_C.MODEL.RESNETS.DROPBLOCK.ON_PER_STAGE = [False, False, True, True]  # res2, res3, res4, res5
_C.MODEL.RESNETS.DROPBLOCK.WARMUP_ITERS = 0

_C.MODEL.FPN = CN()
_C.MODEL.FPN.IN_FEATURES = []  # backbone features the FPN takes, e.g. ["res2", "res3", "res4", "res5"]
_C.MODEL.FPN.OUT_CHANNELS = 256
_C.MODEL.FPN.NORM = ""  # norm of the lateral and output convs
_C.MODEL.FPN.FUSE_TYPE = "sum"  # "sum" or "avg"

_C.MODEL.PROPOSAL_GENERATOR = CN()
_C.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"
# Proposals with a side <= this (input pixels) are dropped (detectron2's rule; torchvision drops sides < this, which
# differs only for a side of exactly MIN_SIZE).
_C.MODEL.PROPOSAL_GENERATOR.MIN_SIZE = 0.0

_C.MODEL.ANCHOR_GENERATOR = CN()
_C.MODEL.ANCHOR_GENERATOR.NAME = "DefaultAnchorGenerator"
# Anchor sizes (sqrt of area, input pixels): one list per feature level, or one list for all levels.
_C.MODEL.ANCHOR_GENERATOR.SIZES = [[32, 64, 128, 256, 512]]
_C.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[0.5, 1.0, 2.0]]  # height / width
_C.MODEL.ANCHOR_GENERATOR.OFFSET = 0.0  # anchor centres at (i + OFFSET) * stride
# det_dcn: round the cell anchors (centred at 0) to integer coordinates, as torchvision does.
_C.MODEL.ANCHOR_GENERATOR.ROUND_BASE_ANCHORS = False
# det_dcn: order of a level's cell anchors: "size_major" (detectron2) or "ratio_major" (torchvision); the same
# when a level has a single size. It must match the checkpoint's RPN head channel order.
_C.MODEL.ANCHOR_GENERATOR.CELL_ANCHOR_ORDER = "size_major"
# det_dcn: per-axis stride = padded image size // feature map size (torchvision) instead of the nominal stride;
# they differ where a map's size was rounded, e.g. P6 of an image whose P5 has an odd size.
_C.MODEL.ANCHOR_GENERATOR.STRIDE_FROM_IMAGE_SIZE = False

_C.MODEL.RPN = CN()
_C.MODEL.RPN.HEAD_NAME = "StandardRPNHead"
_C.MODEL.RPN.IN_FEATURES = ["res4"]
_C.MODEL.RPN.BOUNDARY_THRESH = -1  # anchors further than this outside the image are ignored; -1 keeps all
_C.MODEL.RPN.IOU_THRESHOLDS = [0.3, 0.7]
_C.MODEL.RPN.IOU_LABELS = [0, -1, 1]  # background, ignore, foreground
_C.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256
_C.MODEL.RPN.POSITIVE_FRACTION = 0.5
_C.MODEL.RPN.BBOX_REG_LOSS_TYPE = "smooth_l1"  # "smooth_l1" or "giou"
_C.MODEL.RPN.BBOX_REG_LOSS_WEIGHT = 1.0
_C.MODEL.RPN.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
_C.MODEL.RPN.SMOOTH_L1_BETA = 0.0  # 0 = L1
_C.MODEL.RPN.LOSS_WEIGHT = 1.0
# Top-k before NMS is per feature level; top-k after NMS is per image.
_C.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 12000
_C.MODEL.RPN.PRE_NMS_TOPK_TEST = 6000
_C.MODEL.RPN.POST_NMS_TOPK_TRAIN = 2000
_C.MODEL.RPN.POST_NMS_TOPK_TEST = 1000
_C.MODEL.RPN.NMS_THRESH = 0.7
# det_dcn: proposals with sigmoid(objectness) below this are dropped before NMS (torchvision's rpn_score_thresh);
# 0.0 keeps all.
_C.MODEL.RPN.SCORE_THRESH = 0.0
# det_dcn: rank proposals in NMS by sigmoid(objectness) (torchvision) instead of the logit (detectron2). Same order
# except among logits whose sigmoids round to the same float32 (e.g. all logits > ~17 give 1.0).
_C.MODEL.RPN.NMS_ON_SIGMOID = False
_C.MODEL.RPN.CONV_DIMS = [-1]  # hidden 3x3 convs of the head; -1 = same as input channels

_C.MODEL.ROI_HEADS = CN()
# det_dcn registers "StandardROIHeads" (detectron2's default here is the C4 head "Res5ROIHeads", which det_dcn
# does not have: a config relying on it fails at build time naming this key).
_C.MODEL.ROI_HEADS.NAME = "Res5ROIHeads"
_C.MODEL.ROI_HEADS.NUM_CLASSES = 80  # foreground classes; the background class is index NUM_CLASSES
_C.MODEL.ROI_HEADS.IN_FEATURES = ["res4"]
_C.MODEL.ROI_HEADS.IOU_THRESHOLDS = [0.5]
_C.MODEL.ROI_HEADS.IOU_LABELS = [0, 1]
_C.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512  # sampled RoIs per image in training
_C.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.25
_C.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05
_C.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.5
_C.MODEL.ROI_HEADS.PROPOSAL_APPEND_GT = True
# det_dcn: at inference, drop detections with a side shorter than this (input pixels) before NMS; torchvision
# uses 1e-2, detectron2 keeps all (0.0).
_C.MODEL.ROI_HEADS.MIN_BOX_SIZE_TEST = 0.0

_C.MODEL.ROI_BOX_HEAD = CN()
_C.MODEL.ROI_BOX_HEAD.NAME = ""  # det_dcn registers "FastRCNNConvFCHead"; "" (detectron2's default) must be set
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE = "smooth_l1"
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT = 1.0
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_C.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA = 0.0
_C.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 14
_C.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 0  # 0 = adaptive, ceil(roi_size / resolution)
# "ROIAlign" (no half-pixel shift), "ROIAlignV2" (aligned), "ROIPool",
# det_dcn: "DeformRoIPool" (DCNv1 dpool) and "ModulatedDeformRoIPool" (DCNv2 mdpool).
_C.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIAlignV2"
# det_dcn: RoI-to-level rule floor(LEVEL + log2(sqrt(area) / BOX_SIZE)): "detectron2" adds 1e-8 inside the log,
# "torchvision" adds 1e-6 outside it, "mmdet" adds 1e-6 to sqrt(area) / finest_scale (56 for P2..P5) inside it
# (they differ for boxes right at a level boundary).
_C.MODEL.ROI_BOX_HEAD.POOLER_LEVEL_MAPPER = "detectron2"
_C.MODEL.ROI_BOX_HEAD.POOLER_CANONICAL_BOX_SIZE = 224  # det_dcn: a box of this size (sqrt area) ...
_C.MODEL.ROI_BOX_HEAD.POOLER_CANONICAL_LEVEL = 4  # det_dcn: ... is pooled from this level (FPN paper eq. 1)
_C.MODEL.ROI_BOX_HEAD.DEFORM_POOL_GAMMA = 0.1  # det_dcn: offset scale of the deformable poolers
_C.MODEL.ROI_BOX_HEAD.DEFORM_POOL_FC_DIM = 1024  # det_dcn: hidden width of their offset / mask branch
_C.MODEL.ROI_BOX_HEAD.NUM_FC = 0
_C.MODEL.ROI_BOX_HEAD.FC_DIM = 1024
_C.MODEL.ROI_BOX_HEAD.NUM_CONV = 0
_C.MODEL.ROI_BOX_HEAD.CONV_DIM = 256
_C.MODEL.ROI_BOX_HEAD.NORM = ""
_C.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = False

# ---------------------------------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------------------------------
_C.INPUT = CN()
# Shortest-edge sizes for training, one chosen per image ("choice") or a [min, max] range ("range").
_C.INPUT.MIN_SIZE_TRAIN = (800,)
_C.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
_C.INPUT.MAX_SIZE_TRAIN = 1333
_C.INPUT.MIN_SIZE_TEST = 800  # 0 disables resizing at test time
_C.INPUT.MAX_SIZE_TEST = 1333
_C.INPUT.RANDOM_FLIP = "horizontal"  # "horizontal", "vertical" or "none"
_C.INPUT.FORMAT = "BGR"  # channel order the model sees: "BGR" or "RGB"
# det_dcn: how images are resized to MIN_SIZE_* / MAX_SIZE_* (sizes rounded to the nearest pixel unless noted):
#   "detectron2": the uint8 image with PIL's bilinear filter (antialiased when shrinking), before normalisation;
#   "mmdet": the uint8 image with OpenCV's bilinear filter (no antialiasing), before normalisation;
#   "torchvision": training images as "mmdet"; test images after normalisation, in float, bilinear without
#     antialiasing, sizes floor(side * scale) (torchvision's GeneralizedRCNNTransform).
# Test images are resized inside the model in every style, so a model called directly resizes the same way.
_C.INPUT.RESIZE_STYLE = "detectron2"
# Images are padded to a multiple of this (0 = the backbone's own requirement, e.g. 32 for FPN).
_C.INPUT.SIZE_DIVISIBILITY = 0
# Training augmentations beyond resize + flip, all off by default (det_dcn/data/transforms.py build_augmentations
# applies them in the order crop, resize, flip, colour jitter). Boxes move with the pixels; a box left without area
# is dropped, and an image left without any box is replaced by another one (logged).
# Random crop before the resize, detectron2's TYPE / SIZE: "relative" [h, w] fractions of the image;
# "relative_range": fractions drawn uniformly in [SIZE[0], 1] and [SIZE[1], 1]; "absolute" [h, w] pixels;
# "absolute_range" [min, max] pixels, each side drawn in it (never more than the image's).
_C.INPUT.CROP = CN()
_C.INPUT.CROP.ENABLED = False
_C.INPUT.CROP.TYPE = "relative_range"
_C.INPUT.CROP.SIZE = [0.9, 0.9]
# det_dcn: the window contains the centre of one randomly chosen box, so every crop keeps part of a box.
_C.INPUT.CROP.AROUND_BOX = False
# Large-scale jitter (Ghiasi et al. 2021, "Simple Copy-Paste"): instead of MIN_SIZE_TRAIN / MAX_SIZE_TRAIN, fit the
# image inside an IMAGE_SIZE square times a factor drawn uniformly in SCALE_RANGE, then crop a random IMAGE_SIZE
# square (smaller images are padded by the batching). Test with MIN_SIZE_TEST = MAX_SIZE_TEST = IMAGE_SIZE.
_C.INPUT.LSJ = CN()
_C.INPUT.LSJ.ENABLED = False
_C.INPUT.LSJ.IMAGE_SIZE = 1024
_C.INPUT.LSJ.SCALE_RANGE = [0.1, 2.0]
# Photometric jitter: each factor drawn uniformly in its [min, max] ([1.0, 1.0] turns that one off). Brightness
# scales the pixels, contrast blends with the image's mean, saturation with the pixel's grey.
_C.INPUT.COLOR_JITTER = CN()
_C.INPUT.COLOR_JITTER.ENABLED = False
_C.INPUT.COLOR_JITTER.BRIGHTNESS = [0.8, 1.2]
_C.INPUT.COLOR_JITTER.CONTRAST = [0.8, 1.2]
_C.INPUT.COLOR_JITTER.SATURATION = [0.8, 1.2]
# Augmentations that combine training images (det_dcn/data/mixing.py; det_dcn's keys, off by default), applied to
# images that went through the augmentations above. Mosaic (YOLOv4): with probability PROB, four images at half
# scale around a random centre of a canvas the first image's size. MixUp (Zhang et al. 2019): with probability
# PROB, blended with another image, lam * a + (1 - lam) * b with lam ~ Beta(ALPHA, ALPHA), the boxes of both kept.
_C.INPUT.MOSAIC = CN()
_C.INPUT.MOSAIC.ENABLED = False
_C.INPUT.MOSAIC.PROB = 0.5
_C.INPUT.MIXUP = CN()
_C.INPUT.MIXUP.ENABLED = False
_C.INPUT.MIXUP.PROB = 0.5
_C.INPUT.MIXUP.ALPHA = 1.5

# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------
_C.DATASETS = CN()
_C.DATASETS.TRAIN = ()  # registered dataset names
_C.DATASETS.TEST = ()  # empty: no evaluation
# COCO-format datasets to register by name before TRAIN / TEST are looked up, each [name, json_file, image_root]
# (paths relative to the working directory), e.g. [["my_train", "ann/train.json", "images/train"]]; the
# command-line form: DATASETS.CUSTOM_COCO "[['my_train', 'ann/train.json', 'images/train']]". det_dcn's own key.
_C.DATASETS.CUSTOM_COCO = ()
# Pascal VOC XML folders (LabelImg: one XML per image, beside the images or in their own folder) to register, each
# [name, annotation_dir, image_dir] plus optionally class_names (a list or "a,b"; "" or absent: the sorted names
# found in all the folder's XMLs), val_every (default 5) and fold (0 to val_every - 1, default val_every - 1). Each entry
# registers <name> (every image), <name>_val (every val_every-th XML file in natural name order: raccoon-5,
# raccoon-10, ...; fold 0 starts at the first) and <name>_train (the rest), evaluated with VOC2012's area rule. XMLs whose image is missing are skipped with a warning; a <size> that
# disagrees with the image is replaced by the image's; malformed XML or an unknown class is an error naming the file.
# E.g. DATASETS.CUSTOM_VOC "[['raccoon', 'raccoon/annotations', 'raccoon/images']]". det_dcn's own key.
_C.DATASETS.CUSTOM_VOC = ()

_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
_C.DATALOADER.ASPECT_RATIO_GROUPING = True  # batch landscape with landscape, portrait with portrait
_C.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = True  # drop training images without a usable box

# ---------------------------------------------------------------------------------------------------------------
# Solver
# ---------------------------------------------------------------------------------------------------------------
_C.SOLVER = CN()
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"  # or "WarmupCosineLR"
_C.SOLVER.MAX_ITER = 40000
_C.SOLVER.BASE_LR = 0.001
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.NESTEROV = False
_C.SOLVER.WEIGHT_DECAY = 0.0001
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0  # weight decay of norm layers' weights and biases
_C.SOLVER.BIAS_LR_FACTOR = 1.0
_C.SOLVER.WEIGHT_DECAY_BIAS = -1.0  # det_dcn: < 0 means the same as WEIGHT_DECAY (detectron2 uses None)
_C.SOLVER.GAMMA = 0.1  # LR multiplier at each step
_C.SOLVER.STEPS = (30000,)
_C.SOLVER.WARMUP_FACTOR = 1.0 / 1000
_C.SOLVER.WARMUP_ITERS = 1000
_C.SOLVER.WARMUP_METHOD = "linear"  # "linear" or "constant"
_C.SOLVER.CHECKPOINT_PERIOD = 5000
_C.SOLVER.CHECKPOINT_MAX_KEEP = 0  # det_dcn: keep only the newest N model_XXXXXXX.pth (0 = all); never model_final
_C.SOLVER.IMS_PER_BATCH = 16  # total over all processes
_C.SOLVER.CLIP_GRADIENTS = CN()
_C.SOLVER.CLIP_GRADIENTS.ENABLED = False
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "value"  # "value" or "norm"
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
_C.SOLVER.AMP = CN()
# fp16 with a gradient scaler on CUDA, bfloat16 autocast on CPU.
_C.SOLVER.AMP.ENABLED = False

# Exponential moving average of the weights (det_dcn/engine/model_ema.py), d2go's keys: after every step the average
# moves by (1 - decay) towards the weights; decay = DECAY, or min(DECAY, (1 + n) / (DECAY_WARM_UP_FACTOR + n)) after
# n updates when the factor is >= 0. With ENABLED the trainer evaluates the average and checkpoints keep it
# ("model_ema"); loading for inference (--eval-only, demo, export) takes it when ENABLED or
# USE_EMA_WEIGHTS_FOR_EVAL_ONLY. DEVICE: where the average lives ("" = the model's device).
_C.MODEL_EMA = CN()
_C.MODEL_EMA.ENABLED = False
_C.MODEL_EMA.DECAY = 0.999
_C.MODEL_EMA.DECAY_WARM_UP_FACTOR = -1  # an int, as in d2go
_C.MODEL_EMA.DEVICE = ""
_C.MODEL_EMA.USE_EMA_WEIGHTS_FOR_EVAL_ONLY = False

# ---------------------------------------------------------------------------------------------------------------
# Test
# ---------------------------------------------------------------------------------------------------------------
_C.TEST = CN()
_C.TEST.EVAL_PERIOD = 0  # evaluate every N iterations during training (0: only at the end)
_C.TEST.DETECTIONS_PER_IMAGE = 100
# det_dcn: "auto" (by the dataset metadata's evaluator_type: "pascal_voc" -> Pascal VOC AP, else COCO AP),
# "coco" or "pascal_voc" (either rule on any dataset)
_C.TEST.EVALUATOR = "auto"

# det_dcn: percentile bootstrap intervals of AP / AP50 / AP75 over the test images, logged by the COCO and Pascal VOC
# evaluators beside their AP (det_dcn/evaluation/bootstrap.py): NUM_SAMPLES resamples (0: off; 1000 take ~0.5 s for
# 40 images), CONFIDENCE level.
_C.TEST.BOOTSTRAP = CN()
_C.TEST.BOOTSTRAP.NUM_SAMPLES = 0
_C.TEST.BOOTSTRAP.CONFIDENCE = 0.95

# Box voting (Gidaris & Komodakis 2015), Detectron's keys: after per-class NMS each detection's box becomes the
# score-weighted mean of the boxes of its class (all above SCORE_THRESH_TEST, before NMS) that overlap it by >= VOTE_TH;
# its score is kept (Detectron's SCORING_METHOD "ID", the only one det_dcn has). It costs one IoU matrix per image.
_C.TEST.BBOX_VOTE = CN()
_C.TEST.BBOX_VOTE.ENABLED = False
_C.TEST.BBOX_VOTE.VOTE_TH = 0.8

# Soft-NMS (Bodla et al. 2017; Detectron's keys) instead of the box head's NMS: overlapping boxes are kept with
# their scores decayed, "linear" by 1 - IoU above MODEL.ROI_HEADS.NMS_THRESH_TEST, "gaussian" by exp(-IoU^2 / SIGMA).
# Eager only: torch.export / ONNX export refuse it.
_C.TEST.SOFT_NMS = CN()
_C.TEST.SOFT_NMS.ENABLED = False
_C.TEST.SOFT_NMS.METHOD = "linear"
_C.TEST.SOFT_NMS.SIGMA = 0.5

# Test-time augmentation (det_dcn/modeling/test_time_augmentation.py): evaluation also runs the model at every size
# in MIN_SIZES (capped by MAX_SIZE), mirrored too with FLIP, and reports those merged detections as "bbox_TTA".
_C.TEST.AUG = CN()
_C.TEST.AUG.ENABLED = False
_C.TEST.AUG.MIN_SIZES = (400, 500, 600, 700, 800, 900, 1000, 1100, 1200)
_C.TEST.AUG.MAX_SIZE = 4000
_C.TEST.AUG.FLIP = True
# det_dcn's: "nms" (detectron2's merge) or "vote" (NMS, then each kept box the score-weighted mean of its class's boxes
# overlapping it by >= VOTE_IOU_THRESH)
_C.TEST.AUG.MERGE = "nms"
_C.TEST.AUG.VOTE_IOU_THRESH = 0.7

# Precise BN (detectron2's keys; det_dcn/layers/precise_bn.py): before each evaluation in training and after the last
# iteration (so in model_final), every BatchNorm layer's statistics become the average over the first NUM_ITER
# training batches with the weights fixed, instead of the running average of the last few dozen steps; with
# --eval-only, recomputed the same way on DATASETS.TRAIN. Models without BatchNorm (FrozenBN, GN) are not affected.
_C.TEST.PRECISE_BN = CN()
_C.TEST.PRECISE_BN.ENABLED = False
_C.TEST.PRECISE_BN.NUM_ITER = 200

# ---------------------------------------------------------------------------------------------------------------
# Misc
# ---------------------------------------------------------------------------------------------------------------
_C.OUTPUT_DIR = "./output"
_C.SEED = -1  # < 0: a seed drawn from time and pid, logged so the run can be repeated
_C.CUDNN_BENCHMARK = False
_C.LOG_PERIOD = 20  # det_dcn: iterations between log lines and metrics.json records
# det_dcn: DistributedDataParallel's find_unused_parameters: True only for a model whose forward leaves some trainable
# parameters without a gradient (it costs an extra graph traversal every iteration).
_C.FIND_UNUSED_PARAMETERS = False

# ---------------------------------------------------------------------------------------------------------------
# detectron2 keys of parts det_dcn does not have, with detectron2's defaults. A detectron2 config file that carries
# them loads unchanged; they are ignored while their part is off, and det_dcn/config/compat.py refuses at build time
# a config that turns one on (one line naming the key and what det_dcn supports).
# ---------------------------------------------------------------------------------------------------------------
_C.MODEL.LOAD_PROPOSALS = False  # precomputed proposals (det_dcn always runs its RPN)
_C.MODEL.MASK_ON = False  # mask head
_C.MODEL.KEYPOINT_ON = False  # keypoint head
_C.MODEL.ANCHOR_GENERATOR.ANGLES = [[-90, 0, 90]]  # rotated anchors only
_C.MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES = False
_C.MODEL.ROI_BOX_HEAD.USE_FED_LOSS = False
_C.MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE = False
_C.MODEL.ROI_BOX_HEAD.FED_LOSS_FREQ_WEIGHT_POWER = 0.5
_C.MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES = 50
_C.MODEL.ROI_BOX_CASCADE_HEAD = CN()  # Cascade R-CNN (ROI_HEADS.NAME "CascadeROIHeads")
_C.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS = ((10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0),
                                                  (30.0, 30.0, 15.0, 15.0))
_C.MODEL.ROI_BOX_CASCADE_HEAD.IOUS = (0.5, 0.6, 0.7)
_C.MODEL.ROI_MASK_HEAD = CN()  # used only with MODEL.MASK_ON
_C.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNConvUpsampleHead"
_C.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 14
_C.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO = 0
_C.MODEL.ROI_MASK_HEAD.NUM_CONV = 0
_C.MODEL.ROI_MASK_HEAD.CONV_DIM = 256
_C.MODEL.ROI_MASK_HEAD.NORM = ""
_C.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK = False
_C.MODEL.ROI_MASK_HEAD.POOLER_TYPE = "ROIAlignV2"
_C.MODEL.ROI_KEYPOINT_HEAD = CN()  # used only with MODEL.KEYPOINT_ON
_C.MODEL.ROI_KEYPOINT_HEAD.NAME = "KRCNNConvDeconvUpsampleHead"
_C.MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION = 14
_C.MODEL.ROI_KEYPOINT_HEAD.POOLER_SAMPLING_RATIO = 0
_C.MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS = tuple(512 for _ in range(8))
_C.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS = 17
_C.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE = 1
_C.MODEL.ROI_KEYPOINT_HEAD.NORMALIZE_LOSS_BY_VISIBLE_KEYPOINTS = True
_C.MODEL.ROI_KEYPOINT_HEAD.LOSS_WEIGHT = 1.0
_C.MODEL.ROI_KEYPOINT_HEAD.POOLER_TYPE = "ROIAlignV2"
_C.MODEL.SEM_SEG_HEAD = CN()  # META_ARCHITECTURE "SemanticSegmentor" / "PanopticFPN"
_C.MODEL.SEM_SEG_HEAD.NAME = "SemSegFPNHead"
_C.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["p2", "p3", "p4", "p5"]
_C.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 255
_C.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 54
_C.MODEL.SEM_SEG_HEAD.CONVS_DIM = 128
_C.MODEL.SEM_SEG_HEAD.COMMON_STRIDE = 4
_C.MODEL.SEM_SEG_HEAD.NORM = "GN"
_C.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT = 1.0
_C.MODEL.PANOPTIC_FPN = CN()  # META_ARCHITECTURE "PanopticFPN"
_C.MODEL.PANOPTIC_FPN.INSTANCE_LOSS_WEIGHT = 1.0
_C.MODEL.PANOPTIC_FPN.COMBINE = CN()
_C.MODEL.PANOPTIC_FPN.COMBINE.ENABLED = True
_C.MODEL.PANOPTIC_FPN.COMBINE.OVERLAP_THRESH = 0.5
_C.MODEL.PANOPTIC_FPN.COMBINE.STUFF_AREA_LIMIT = 4096
_C.MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH = 0.5
_C.MODEL.RETINANET = CN()  # META_ARCHITECTURE "RetinaNet"
_C.MODEL.RETINANET.NUM_CLASSES = 80
_C.MODEL.RETINANET.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
_C.MODEL.RETINANET.NUM_CONVS = 4
_C.MODEL.RETINANET.IOU_THRESHOLDS = [0.4, 0.5]
_C.MODEL.RETINANET.IOU_LABELS = [0, -1, 1]
_C.MODEL.RETINANET.PRIOR_PROB = 0.01
_C.MODEL.RETINANET.SCORE_THRESH_TEST = 0.05
_C.MODEL.RETINANET.TOPK_CANDIDATES_TEST = 1000
_C.MODEL.RETINANET.NMS_THRESH_TEST = 0.5
_C.MODEL.RETINANET.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
_C.MODEL.RETINANET.FOCAL_LOSS_GAMMA = 2.0
_C.MODEL.RETINANET.FOCAL_LOSS_ALPHA = 0.25
_C.MODEL.RETINANET.SMOOTH_L1_LOSS_BETA = 0.1
_C.MODEL.RETINANET.BBOX_REG_LOSS_TYPE = "smooth_l1"
_C.MODEL.RETINANET.NORM = ""
_C.INPUT.MASK_FORMAT = "polygon"
_C.DATASETS.PROPOSAL_FILES_TRAIN = ()  # used only with MODEL.LOAD_PROPOSALS
_C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN = 2000
_C.DATASETS.PROPOSAL_FILES_TEST = ()
_C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST = 1000
_C.DATALOADER.REPEAT_THRESHOLD = 0.0  # SAMPLER_TRAIN "RepeatFactorTrainingSampler" only
_C.DATALOADER.REPEAT_SQRT = True
_C.SOLVER.BASE_LR_END = 0.0  # the LR WarmupCosineLR ends at
_C.SOLVER.NUM_DECAYS = 3  # LR_SCHEDULER_NAME "WarmupStepWithFixedGammaLR" only
_C.SOLVER.RESCALE_INTERVAL = False  # same
_C.SOLVER.REFERENCE_WORLD_SIZE = 0  # automatic LR / batch scaling to the number of GPUs
_C.TEST.EXPECTED_RESULTS = []
_C.TEST.KEYPOINT_OKS_SIGMAS = []
_C.FLOAT32_PRECISION = ""  # torch float32 matmul precision
_C.VIS_PERIOD = 0  # training-time visualisation
_C.GLOBAL = CN()
_C.GLOBAL.HACK = 1.0
