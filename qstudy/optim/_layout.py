"""Which model coordinates a tensor the optimizer steps holds (docs/design.md §2).

Coordinates are numbered by flattening each param group's trainable parameters in
order. Without DeepSpeed a parameter tensor holds one contiguous run of its group's
coordinates. Under ZeRO the optimizer steps flat fp32 partitions instead, which hold
one or more runs (ZeRO-1/2 pad parameters inside the flat buffer; ZeRO-3 partitions
each parameter on its own), so a partition's layout is a list of segments.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

__all__ = ["Segment", "Layout", "default_layouts"]


@dataclasses.dataclass(frozen=True)
class Segment:
    """A run of ``length`` coordinates: local ``[local_start, +length)`` holds the group's
    coordinates ``[global_start, +length)``."""

    local_start: int
    global_start: int
    length: int


@dataclasses.dataclass(frozen=True)
class Layout:
    """The coordinates one stepped tensor holds.

    Attributes:
        group: index of the param group whose numbering the segments use.
        group_numel: number of coordinates in that group (all ranks together).
        segments: the runs this tensor holds; local elements outside them are padding.
        process_group: set when other ranks hold the group's other coordinates
            (``torch.distributed`` group, ``None`` for the default group); ``distributed``
            says whether that is the case at all.
        distributed: whether the group's coordinates are spread over ranks.
    """

    group: int
    group_numel: int
    segments: tuple[Segment, ...]
    distributed: bool = False
    process_group: Any = None


def default_layouts(group_index: int, params: list[torch.Tensor]) -> dict[int, Layout]:
    """Layouts of a param group's own tensors, keyed by ``id(tensor)``: each trainable
    parameter holds the next contiguous run of the group's coordinates."""
    trainable = [p for p in params if p.requires_grad]
    group_numel = sum(p.numel() for p in trainable)
    layouts = {}
    offset = 0
    for p in trainable:
        layouts[id(p)] = Layout(group_index, group_numel, (Segment(0, offset, p.numel()),))
        offset += p.numel()
    return layouts
