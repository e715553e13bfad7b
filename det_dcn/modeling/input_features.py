"""Checking that a head's IN_FEATURES exist in the backbone's output."""

from typing import Dict, List, Sequence


def select_features(cfg_key: str, in_features: Sequence[str], input_shape: Dict) -> List:
    """The ShapeSpecs of ``in_features``; a name the backbone does not produce is a ValueError naming the key."""
    if len(in_features) == 0:
        raise ValueError(f"{cfg_key} is empty; name at least one backbone feature from {sorted(input_shape)}")
    missing = [f for f in in_features if f not in input_shape]
    if missing:
        raise ValueError(
            f"{cfg_key}={list(in_features)} names {missing}, which the backbone does not output; "
            f"it outputs {sorted(input_shape)}"
        )
    return [input_shape[f] for f in in_features]
