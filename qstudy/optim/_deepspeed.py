"""Tells SuperpositionalAdamW which coordinates DeepSpeed's flat partitions hold.

DeepSpeed hands a client optimizer flat fp32 partitions instead of the model's
parameters. So that ``scope="leading"`` and the ``circuit``/``gaussian`` responses act on
the same coordinates as a run without DeepSpeed (docs/design.md §2), :func:`bind_deepspeed` reads
each partition's place in its group from the ZeRO optimizer and declares it with
:meth:`SuperpositionalAdamW.set_layout`. No DeepSpeed import: the wrapper is read by its
attributes, and a wrapper this module does not know is refused with a clear error.
"""

from __future__ import annotations

from typing import Any

from qstudy.optim._layout import Layout, Segment, default_layouts
from qstudy.optim._superpositional import SuperpositionalAdamW

__all__ = ["bind_deepspeed"]


def bind_deepspeed(engine: Any) -> SuperpositionalAdamW:
    """Binds the SuperpositionalAdamW inside a DeepSpeed engine to its partitions.

    Call once after ``deepspeed.initialize`` (and again after anything that rebuilds the
    partitions). Supports no wrapper (ZeRO stage 0 in fp32), ``FP16_UnfusedOptimizer``
    (ZeRO stage 0 in bf16 or fp16), ``BF16_Optimizer`` and ZeRO stages 1, 2 and 3, with
    or without CPU offload.

    Args:
        engine: the ``DeepSpeedEngine`` (or its ``.optimizer``).

    Returns:
        The client ``SuperpositionalAdamW``.

    Raises:
        TypeError: the client optimizer is not a SuperpositionalAdamW, or DeepSpeed
            wrapped it in an optimizer this function does not know.
        ValueError: a ZeRO-3 sub-group boundary splits a ``circuit`` block.
    """
    wrapper = getattr(engine, "optimizer", engine) if not isinstance(engine, SuperpositionalAdamW) else engine
    if isinstance(wrapper, SuperpositionalAdamW):
        return wrapper  # stage 0, fp32: DeepSpeed steps the model's own parameters
    client = getattr(wrapper, "optimizer", None)
    if not isinstance(client, SuperpositionalAdamW):
        raise TypeError(
            f"bind_deepspeed: the engine's client optimizer is {type(client).__name__}, expected SuperpositionalAdamW"
        )
    kind = type(wrapper).__name__
    if kind == "DeepSpeedZeroOptimizer":
        _bind_zero12(wrapper, client)
    elif kind == "DeepSpeedZeroOptimizer_Stage3":
        _bind_zero3(wrapper, client)
    elif kind == "BF16_Optimizer":
        _bind_bf16(wrapper, client)
    elif kind == "FP16_UnfusedOptimizer":
        # ZeRO stage 0 with a bf16/fp16 model (the zero0 preset on GPU): DeepSpeed wraps
        # any client optimizer that is not its FusedAdam in this, and steps fp32 copies.
        _bind_unfused(wrapper, client)
    else:
        raise TypeError(
            f"bind_deepspeed: DeepSpeed wrapped the optimizer in {kind}, whose partitions qstudy "
            "does not know; supported: DeepSpeedZeroOptimizer (ZeRO-1/2), "
            "DeepSpeedZeroOptimizer_Stage3 (ZeRO-3), BF16_Optimizer, FP16_UnfusedOptimizer"
        )
    return client


def _dist():
    import torch.distributed as dist

    return dist


def _group_offsets(params) -> tuple[dict[int, int], int]:
    offsets, total = {}, 0
    for p in params:
        offsets[id(p)] = total
        total += _numel(p)
    return offsets, total


def _numel(p) -> int:
    return int(getattr(p, "ds_numel", p.numel()))


def _runs(pieces, left: int, size: int) -> tuple[Segment, ...]:
    """Segments of the flat range [left, left + size) for pieces (flat_start, global_start, numel)."""
    out = []
    for flat_start, global_start, numel in pieces:
        a, b = max(flat_start, left), min(flat_start + numel, left + size)
        if a < b:
            out.append(Segment(a - left, global_start + (a - flat_start), b - a))
    return tuple(out)


def _bind_zero12(wrapper, client: SuperpositionalAdamW) -> None:
    dist = _dist()
    for i in range(len(wrapper.bit16_groups)):
        process_group = wrapper.real_dp_process_group[i]
        rank = dist.get_rank(group=process_group)
        offsets, total = _group_offsets(wrapper.bit16_groups[i])
        partitions = wrapper.parallel_partitioned_bit16_groups[i]
        left = sum(int(t.numel()) for t in partitions[:rank])
        size = int(partitions[rank].numel())
        # Parameters sit in the flat buffer in round-robin order, padded for alignment.
        pieces = [
            (flat_start, offsets[id(p)], int(meta.numel()))
            for p, meta, flat_start in zip(
                wrapper.round_robin_bit16_groups[i],
                wrapper.round_robin_bit16_meta[i],
                wrapper.round_robin_bit16_offsets[i],
            )
        ]
        layout = Layout(
            i, total, _runs(pieces, left, size), dist.get_world_size(group=process_group) > 1, process_group
        )
        client.set_layout(wrapper.single_partition_of_fp32_groups[i], layout)


def _bind_bf16(wrapper, client: SuperpositionalAdamW) -> None:
    dist = _dist()
    for i, params in enumerate(wrapper.bf16_groups):
        process_group = wrapper.real_dp_process_group[i]
        rank = dist.get_rank(group=process_group)
        offsets, total = _group_offsets(params)
        flat = wrapper.fp32_groups_flat_partition[i]
        size = int(flat.numel())
        pieces = [(offsets[id(p)], offsets[id(p)], p.numel()) for p in params]  # packed, padded at the end
        layout = Layout(
            i, total, _runs(pieces, rank * size, size), dist.get_world_size(group=process_group) > 1, process_group
        )
        client.set_layout(flat, layout)


def _bind_unfused(wrapper, client: SuperpositionalAdamW) -> None:
    # One fp32 copy per trainable parameter, in the group's order, on every rank (no
    # partitioning): each copy holds its parameter's run of the group's coordinates.
    for i, fp32_params in enumerate(wrapper.fp32_groups):
        layouts = default_layouts(i, fp32_params)
        for p in fp32_params:
            client.set_layout(p, layouts[id(p)])


def _bind_zero3(wrapper, client: SuperpositionalAdamW) -> None:
    dist = _dist()
    # Sub-groups split each param group into consecutive runs of its parameters.
    by_group: dict[int, list[int]] = {}
    for sub, group_id in sorted(wrapper.sub_group_to_group_id.items()):
        by_group.setdefault(group_id, []).append(sub)
    for group_id, subs in by_group.items():
        params = [p for sub in subs for p in wrapper.fp16_groups[sub]]
        offsets, total = _group_offsets(params)
        group = client.param_groups[group_id]
        if group["response"] == "circuit" and group["scope"] == "all" and len(subs) > 1:
            n = group["n_qubits"]
            for sub in subs[1:]:
                boundary = offsets[id(wrapper.fp16_groups[sub][0])]
                if boundary % n:
                    raise ValueError(
                        f"bind_deepspeed: ZeRO-3 splits param group {group_id} into sub-groups at "
                        f"coordinate {boundary}, inside a circuit block of n_qubits={n}; the sub-groups "
                        "are stepped one after another, so that block would mix θ_t and θ_t+1. Raise "
                        "zero_optimization.sub_group_size above the group's size "
                        f"({total}) or use scope='leading'"
                    )
        for sub in subs:
            process_group = wrapper.sub_group_process_groups[sub]
            rank = dist.get_rank(group=process_group)
            pieces, local = [], 0
            for p in wrapper.fp16_groups[sub]:
                part = int(p.partition_numel())
                start = rank * part  # each parameter is partitioned on its own
                length = max(0, min(part, _numel(p) - start))
                if length:
                    pieces.append(Segment(local, offsets[id(p)] + start, length))
                local += part
            layout = Layout(group_id, total, tuple(pieces), dist.get_world_size(group=process_group) > 1, process_group)
            client.set_layout(wrapper.fp32_partitioned_groups_flat[sub], layout)
