"""``report.md`` and the terminal table, from the report's numbers."""

from __future__ import annotations

from typing import Any

__all__ = ["arm_table", "render_markdown"]


def _num(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


def _ci(interval: dict[str, Any] | None, digits: int = 4, signed: bool = False) -> str:
    """``0.931 ± 0.012`` (95% interval half width); ``0.931 (n=1)`` without one."""
    if not interval:
        return "-"
    mean = f"{interval['mean']:+.{digits}g}" if signed else f"{interval['mean']:.{digits}g}"
    if interval["low"] is None:
        return f"{mean} (n={interval['n']})"
    return f"{mean} ± {(interval['high'] - interval['low']) / 2:.2g}"


def _ratio(interval: dict[str, Any] | None) -> str:
    if not interval:
        return "-"
    change = interval["mean"] - 1
    if interval["low"] is None:
        return f"{change:+.1%}"
    return f"{change:+.1%} ± {(interval['high'] - interval['low']) / 2:.1%}"


def _target(entry: dict[str, Any]) -> str:
    unit = "epochs" if "epochs" in entry else "steps"
    value = entry.get(unit)
    if not value:
        return "-"
    if entry["censored"]:
        return f"≥ {value['mean']:.3g}, {entry['reached']} of {entry['n']} reached"
    return _ci(value, 3)


def arm_table(arms: dict[str, Any], metric: str) -> tuple[list[str], list[list[str]]]:
    """The main table: one row per arm."""
    targets = next((a["to_target"] for a in arms.values() if a["to_target"]), [])
    header = ["arm", "n", f"final {metric} (95% CI)", "vs control (paired)"]
    header += [f"{'epochs' if 'epochs' in t else 'steps'} to {t['metric']} {t['target']:g}" for t in targets]
    header += ["time/step vs control", "note"]
    rows = []
    for name, arm in arms.items():
        row = [
            name,
            str(arm["n"]) + (f" of {arm['trials']}" if arm["n"] != arm["trials"] else ""),
            _ci(arm["final"]),
            "(control)" if name == "control" else _ci(arm.get("difference"), 3, signed=True),
        ]
        row += [_target(t) for t in arm["to_target"]]
        row.append("(control)" if name == "control" else _ratio(arm.get("time_per_step_ratio")))
        row.append(f"identical to {arm['identical_to']}" if arm["identical_to"] else "")
        rows.append(row)
    return header, rows


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _claim_row(claim: dict[str, Any]) -> list[str]:
    measure = claim["measure"]
    paper = claim.get("paper")
    if measure == "best_arm":
        paper_text = f"{claim['arm']} best"
        measured = ", ".join(f"{k} {_ci(v, 3)}" for k, v in claim.get("means", {}).items())
        measured += f"; best by mean: {claim.get('best_by_mean', '-')}"
    elif measure in ("time_per_step", "time_to_target"):
        paper_text = f"{claim['paper_change']:+.0%}"
        change = claim.get("change")
        measured = (
            "-"
            if not change
            else (
                f"{change['mean']:+.1%}"
                + ("" if change["low"] is None else f" [{change['low']:+.1%}, {change['high']:+.1%}]")
            )
        )
    else:
        paper_text = (
            f"{_num(paper)} vs {_num(claim.get('paper_control'))}"
            if paper is not None
            else f"{claim['paper_change']:+.0%}"
        )
        a, c, d = claim.get("arm_value"), claim.get("control_value"), claim.get("difference")
        measured = "-" if not d else (f"{_ci(a, 3)} vs {_ci(c, 3)}; difference {_ci(d, 3, signed=True)}")
        if "arm_reached" in claim:
            measured += f" (reached: {claim['arm_reached']} and {claim['control_reached']} of {len(claim['seeds'])})"
    why = claim.get("why", "")  # a claim that holds only in direction says so in its verdict (verdict_text)
    return [
        claim["text"],
        f"{claim['arm']} vs {claim['control']}" if measure != "best_arm" else "",
        paper_text,
        measured,
        f"**{verdict_text(claim)}**",
        why,
    ]


def verdict_text(claim: dict[str, Any]) -> str:
    """The verdict as a reader must see it: a claim that holds only in direction says so,
    and whether the paper's size is above or below the measured interval."""
    if claim["verdict"] == "holds" and claim.get("claimed_size_within_interval") is False:
        side = claim.get("claimed_size_is")
        return "holds in direction only" + (f" (the paper's size is {side} than the interval)" if side else "")
    return claim["verdict"]


def render_markdown(header: dict[str, Any], numbers: dict[str, Any], figures: list[str], notes: list[str]) -> str:
    metric = numbers["objective"]["metric"]
    lines = [f"# Study report: {header['study']}", ""]
    lines += [
        f"- Study file: `{header['file']}`; qstudy commit `{header['commit']}`; report written {header['date']}",
        f"- Machine: {header['machine']}",
        f"- Objective: {numbers['objective']['mode']} `{metric}`; trials: {len(numbers['trials'])} "
        f"({len(numbers['not_completed'])} not completed)",
    ]
    if header.get("seeds"):
        lines.append(
            f"- Seeds: {', '.join(map(str, header['seeds']))} (each arm once per seed; arm and control share "
            "the initial model and the batch order of a seed)"
        )
    lines.append("")
    for phase, arms in numbers["arms"].items():
        if not arms:
            continue
        lines += [f"## Arms against the control ({phase})", ""]
        lines += _markdown_table(*arm_table(arms, metric))
        lines += [
            "",
            'Intervals are 95% Student-t over seeds; "vs control" is the mean of the per-seed '
            "differences (arm − control, same seed) with its paired interval. A target a seed never reached "
            "counts at its last evaluation, so the mean is a lower bound (≥), and how many reached it is given. "
            f"Time per step: {header['timing_method']}.",
            "",
        ]
        identical = [(n, a) for n, a in arms.items() if a["identical_to"]]
        if identical:
            lines += ["### Settings that changed nothing", ""]
            for name, arm in identical:
                lines.append(
                    f"- **{name}** is identical to **{arm['identical_to']}**, seed for seed (every logged "
                    f"curve within 1e-6): this setting changed nothing. Likely reason: {arm['identical_reason']}."
                )
            lines.append("")
        diag = [(n, a["diagnostics"]) for n, a in arms.items() if a["diagnostics"]]
        if diag:
            lines += [
                "### Can λ matter? The perturbation next to the Adam step",
                "",
                "| arm | ‖lr·λ·Q‖ / ‖AdamW step‖ | perturbed coordinates | with nonzero Q |",
                "|---|---|---|---|",
            ]
            for name, d in diag:
                lines.append(
                    f"| {name} | {_num(d.get('perturbation_to_adam_ratio'), 3)} | "
                    f"{_num(d.get('perturbed_coordinates'), 6)} | {_num(d.get('nonzero_perturbation_coordinates'), 6)} |"
                )
            lines += [
                "",
                "Means over the reported steps, then over seeds. Q multiplies the raw gradient, not Adam's "
                "normalised step: where the ratio is small, λ cannot move the run much.",
                "",
            ]
    if numbers["claims"]:
        lines += [
            "## The paper's claims",
            "",
            "| claim | arms | paper | measured (95% CI) | verdict | note |",
            "|---|---|---|---|---|---|",
        ]
        lines += ["| " + " | ".join(_claim_row(c)) + " |" for c in numbers["claims"]]
        lines += [
            "",
            "Verdicts: **holds** — the interval of the measured difference excludes no effect, on the "
            "paper's side; **not supported** — it includes no effect; **contradicted** — it excludes no effect "
            "on the other side; **holds in direction only** — it holds, but the paper's size lies outside the interval (the "
            "verdict says on which side).",
            "",
        ]
    search = numbers.get("search") or {}
    if search.get("trials"):
        lines += [
            "## Search trials",
            "",
            f"Searched: {', '.join(search['searched'])}. The best single trial is the "
            "best of many noisy trials of one seed each (the winner's curse): the confirm phase, where run, "
            "re-runs the top configurations on fresh seeds.",
            "",
        ]
        rows = []
        for tid in search["ranked"] + [
            t["trial_id"] for t in search["trials"] if t["trial_id"] not in search["ranked"]
        ]:
            t = next(x for x in search["trials"] if x["trial_id"] == tid)
            role = (
                "control" if t["baseline"] == 0 else (f"baseline {t['baseline']}" if t["baseline"] is not None else "")
            )
            values = ", ".join(f"{k}={v}" for k, v in t["values"].items())
            rows.append([tid, role, t["status"], _num(t["objective"], 6), values])
        lines += _markdown_table(["trial", "role", "status", metric, "settings"], rows) + [""]
    if numbers["not_completed"]:
        lines += ["## Trials not completed (not averaged in)", ""]
        lines += _markdown_table(
            ["trial", "arm", "seed", "status"],
            [[t["trial_id"], t["arm"] or "-", str(t["seed"]), t["status"]] for t in numbers["not_completed"]],
        )
        lines.append("")
    if numbers["paper_gaps"]:
        lines += [
            "## Where the paper leaves the set-up open, and what this study chose",
            "",
            "| topic | the paper | this study |",
            "|---|---|---|",
        ]
        lines += [f"| {g['topic']} | {g['paper']} | {g['qstudy']} |" for g in numbers["paper_gaps"]]
        lines.append("")
    if figures:
        lines += ["## Figures", ""] + [f"![{f}](figures/{f})" for f in figures] + [""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def description_section(header: dict[str, Any], numbers: dict[str, Any]) -> str:
    """The report's part of the parent run's description (MLflow renders it on the run's
    page): the arm tables and the claims' verdicts, short enough to sit under the sweep's
    trial table; the rest is in the artifacts."""
    metric = numbers["objective"]["metric"]
    lines = [f"Written {header['date']} (qstudy commit `{header['commit']}`) on {header['machine']}.", ""]
    for phase, arms in numbers["arms"].items():
        if arms:
            lines += [f"Arms against the control ({phase}), 95% Student-t intervals over seeds:", ""]
            lines += _markdown_table(*arm_table(arms, metric)) + [""]
    if numbers["claims"]:
        lines += ["The paper's claims:", ""]
        lines += [f"- {c['text']}: **{verdict_text(c)}**" for c in numbers["claims"]] + [""]
    lines.append("The whole report, with the figures: artifacts `report/report.md` and `report/figures/` of this run.")
    return "\n".join(lines)
