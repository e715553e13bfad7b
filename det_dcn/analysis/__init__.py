"""det_dcn.analysis: what dilation and deformation do to receptive fields, and what deformable layers learned.

geometry (theoretical RF: the standard recurrence and an exact graph for residual / FPN / ASPP networks),
model_geometry (that graph read from a det_dcn backbone), gridding (which pixels stacked dilated convs reach),
effective_rf (gradient-based effective RF), receptive_field (the report tools/receptive_field.py prints),
figures (its pictures), offset_stats (how far a trained model's deformable layers move their samples, the table
tools/offset_stats.py prints).
"""

from .geometry import ChainRF, LayerGeometry, chain_receptive_field, dilated_stack
from .gridding import Coverage, coverage, path_counts, path_counts_1d, rates_coverage

__all__ = ["ChainRF", "Coverage", "LayerGeometry", "chain_receptive_field", "coverage", "dilated_stack",
           "path_counts", "path_counts_1d", "rates_coverage"]
