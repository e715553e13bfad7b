"""format_results_table: evaluation results as the Markdown AP tables tools/train.py prints at the end."""

import math
from typing import Dict, List, Mapping

SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _number(value) -> str:
    value = float(value)
    return "nan" if math.isnan(value) else f"{value:.3f}"


def _task_table(title: str, metrics: Mapping[str, float], columns: int = 3) -> List[str]:
    lines = [f"{title}:"]
    keys = [k for k in SUMMARY_KEYS if k in metrics]
    keys += [k for k in metrics if k not in SUMMARY_KEYS and not k.startswith("AP-")]
    if keys:
        lines.append("| " + " | ".join(keys) + " |")
        lines.append("|" + "|".join(":-:" for _ in keys) + "|")
        lines.append("| " + " | ".join(_number(metrics[k]) for k in keys) + " |")
    per_class = [(k[len("AP-"):], v) for k, v in metrics.items() if k.startswith("AP-")]
    if per_class:
        lines.append("")
        lines.append("Per-category AP:")
        lines.append("| " + " | ".join(["category", "AP"] * min(columns, len(per_class))) + " |")
        lines.append("|" + "|".join([":-", ":-:"] * min(columns, len(per_class))) + "|")
        for i in range(0, len(per_class), columns):
            row = per_class[i:i + columns]
            cells = [c for name, v in row for c in (name, _number(v))]
            cells += ["", ""] * (min(columns, len(per_class)) - len(row))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def format_results_table(results: Mapping) -> str:
    """Tables for ``{"bbox": {"AP": ..., "AP-<class>": ...}}`` or ``{dataset: {"bbox": {...}}}`` results."""
    if not isinstance(results, Mapping):
        raise TypeError(f"format_results_table expects a dict of results, got {type(results).__name__}")
    blocks: Dict[str, Mapping] = {}
    for key, value in results.items():
        if not isinstance(value, Mapping):
            raise ValueError(f"Result '{key}' is {value!r}; expected a dict of metrics")
        if all(isinstance(v, Mapping) for v in value.values()) and value:
            for task, metrics in value.items():  # {dataset: {task: metrics}}
                blocks[f"{key} ({task})"] = metrics
        else:
            blocks[key] = value
    lines: List[str] = []
    for title, metrics in blocks.items():
        if lines:
            lines.append("")
        lines += _task_table(f"Evaluation results: {title}", metrics)
    return "\n".join(lines)
