"""PROPOSAL_GENERATOR_REGISTRY and build_proposal_generator."""

from ...utils.registry import Registry

PROPOSAL_GENERATOR_REGISTRY = Registry("PROPOSAL_GENERATOR")
PROPOSAL_GENERATOR_REGISTRY.__doc__ = (
    "Proposal generators: a class with from_config(cfg, input_shape: Dict[str, ShapeSpec]), or "
    "fn(cfg, input_shape) -> nn.Module. forward(images: ImageList, features: Dict[str, Tensor], "
    "gt_boxes: Optional[List[Tensor]]) -> (List[{'proposal_boxes', 'objectness_logits'}], Dict[str, Tensor])."
)


def build_proposal_generator(cfg, input_shape):
    name = cfg.MODEL.PROPOSAL_GENERATOR.NAME
    obj = PROPOSAL_GENERATOR_REGISTRY.get_configured("MODEL.PROPOSAL_GENERATOR.NAME", name)
    if hasattr(obj, "from_config"):
        return obj.from_config(cfg, input_shape)
    return obj(cfg, input_shape)
