"""The figure of the wrong-side check measured on synthetic images (rule
evaluate_flip_check, embedpatch.demo.flip_evaluation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from embedpatch.report.drawing import BOX_COLOR, new_figure

EVALUATION_GROUPS = {
    "not moved": ("0.6", "o"),
    "moved to PNG space, on the breast": ("#f0a020", "s"),
    "moved to PNG space, off the breast": (BOX_COLOR, "^"),
}


def _evaluation_group(box: pd.Series) -> str:
    if not box["transformed"]:
        return "not moved"
    where = "off" if box["off_breast"] else "on"
    return f"moved to PNG space, {where} the breast"


def flip_evaluation_figure(
    boxes: pd.DataFrame, scores: Mapping[str, Any], box_max: float, mirror_min: float
) -> Figure:
    """The evaluation set's boxes in the check's two measures, and the recall and
    false-positive rates of the check and of coordinate_space auto."""
    fig = new_figure(13, 5.2)
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.2])
    groups = boxes.apply(_evaluation_group, axis=1)
    for name, (color, marker) in EVALUATION_GROUPS.items():
        part = boxes[groups == name]
        left.scatter(
            part["box_tissue"],
            part["mirror_tissue"],
            s=14,
            c=color,
            marker=marker,
            alpha=0.7,
            label=f"{name} ({len(part)})",
        )
    left.axvline(box_max, color="0.3", linestyle="--", linewidth=1)
    left.axhline(mirror_min, color="0.3", linestyle="--", linewidth=1)
    left.fill_between([-0.02, box_max], mirror_min, 1.02, color=BOX_COLOR, alpha=0.08)
    left.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    left.set_xlabel("tissue share of the box as listed")
    left.set_ylabel("tissue share of its mirror compared")
    left.set_title("Each box of the evaluation set (shaded: flagged)")
    left.legend(loc="lower right", fontsize=8)
    measures = {
        "recall, moved off the breast": ("check_recall_off_breast", "auto_recall_off_breast"),
        "recall, every moved box": ("check_recall_all_transformed", "auto_recall_all_transformed"),
        "false positives": ("check_false_positive_rate", "auto_false_positive_rate"),
    }
    positions = np.arange(len(measures))
    for offset, (label, which) in zip(
        (-0.2, 0.2), (("wrong-side check", 0), ("coordinate_space: auto", 1)), strict=True
    ):
        values = [scores[keys[which]] or 0.0 for keys in measures.values()]
        bars = right.bar(positions + offset, values, width=0.38, label=label[0:])
        right.bar_label(bars, [f"{value:.1%}" for value in values], padding=2, fontsize=8)
    right.set_xticks(positions, list(measures), fontsize=9)
    right.set_ylim(0, 1.12)
    right.set_ylabel("share of boxes")
    right.legend(loc="upper right", fontsize=8)
    right.set_title(
        f"{scores['images']} images, {scores['boxes']} boxes, "
        f"{scores['transformed_boxes']} moved ({scores['transformed_off_breast']} off the breast)"
    )
    fig.suptitle("Wrong-side check and coordinate_space auto on synthetic images with known truth")
    return fig
