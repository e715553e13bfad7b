"""Proposal generators (the RPN) and their parts."""

from .anchor_generator import ANCHOR_GENERATOR_REGISTRY, DefaultAnchorGenerator, build_anchor_generator
from .build import PROPOSAL_GENERATOR_REGISTRY, build_proposal_generator
from .rpn import RPN
from .rpn_head import RPN_HEAD_REGISTRY, StandardRPNHead, build_rpn_head
