"""The report's figures (PNG, matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qstudy.config import TrialStatus
from qstudy.report._read import StudyRecord, TrialRecord
from qstudy.report._stats import mean_interval

__all__ = ["write_figures"]

_CURVES = ("eval_accuracy", "gsm8k_accuracy", "eval_loss", "mean_train_loss", "train_loss")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_figures(study, record: StudyRecord, numbers: dict[str, Any], out: Path) -> tuple[list[str], list[str]]:
    """Writes the figures into ``out``; returns (file names, notes on figures not drawn)."""
    out.mkdir(parents=True, exist_ok=True)
    files, notes = [], []
    for phase, arms in numbers["arms"].items():
        if not arms:
            continue
        trials = record.arm_trials(phase)
        completed = {a: [t for t in trials[a] if t.status == TrialStatus.COMPLETED] for a in arms}
        suffix = "" if phase == "comparison" else f"_{phase}"
        name = f"curves{suffix}.png"
        if _curves(completed, arms, record.metric, out / name, title=f"{study.name}: {phase}"):
            files.append(name)
        name = f"final{suffix}.png"
        _finals(arms, record.metric, out / name, title=f"{study.name}: final {record.metric} ({phase})")
        files.append(name)
    search = [t for t in record.trials if t.phase == "search"]
    if search and study.space:
        name = "search_objective.png"
        _search_scatter(study, search, record.metric, out / name)
        files.append(name)
        made, why = _optuna_plots(study, out)
        files += made
        notes += why
    return files, notes


def _curves(
    completed: dict[str, list[TrialRecord]], arms: dict[str, Any], objective: str, path: Path, title: str
) -> bool:
    plt = _pyplot()
    metrics = [
        m for m in dict.fromkeys((objective, *_CURVES)) if any(m in t.curves for ts in completed.values() for t in ts)
    ][:3]
    if not metrics:
        return False
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for arm, trials in completed.items():
            by_step: dict[int, list[float]] = {}
            for t in trials:
                for step, value in t.curves.get(metric, []):
                    by_step.setdefault(step, []).append(value)
            if not by_step:
                continue
            spe = arms[arm].get("steps_per_epoch")
            steps = sorted(by_step)
            xs = [s / spe for s in steps] if spe else steps
            stats = [mean_interval(by_step[s]) for s in steps]
            means = [i.mean for i in stats]
            style = {"color": "black", "linewidth": 2.2} if arm == "control" else {"linewidth": 1.4}
            (line,) = ax.plot(xs, means, label=f"{arm} (n={len(trials)})", **style)
            if all(i.half_width is not None for i in stats):
                ax.fill_between(xs, [i.low for i in stats], [i.high for i in stats], color=line.get_color(), alpha=0.15)
        spe = next((a.get("steps_per_epoch") for a in arms.values() if a.get("steps_per_epoch")), None)
        ax.set_xlabel("epoch" if spe else "optimizer step")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{title}: mean over seeds, 95% interval band")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _finals(arms: dict[str, Any], metric: str, path: Path, title: str) -> None:
    plt = _pyplot()
    names = list(arms)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names) + 2), 4))
    for i, name in enumerate(names):
        per_seed = list(arms[name]["final_per_seed"].values())
        if not per_seed:
            continue
        spread = [i + 0.08 * (k - (len(per_seed) - 1) / 2) for k in range(len(per_seed))]
        ax.scatter(spread, per_seed, s=14, color="gray", zorder=2)
        final = arms[name]["final"]
        low, high = final["low"], final["high"]
        err = None if low is None else [[final["mean"] - low], [high - final["mean"]]]
        ax.errorbar(
            [i],
            [final["mean"]],
            yerr=err,
            fmt="o",
            color="black" if name == "control" else "tab:blue",
            capsize=5,
            zorder=3,
        )
    control = arms.get("control", {}).get("final")
    if control:
        ax.axhline(control["mean"], color="black", linestyle="--", linewidth=0.8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel(metric)
    ax.set_title(f"{title}\nseeds (gray), mean and 95% interval (Student t)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _search_scatter(study, trials: list[TrialRecord], metric: str, path: Path) -> None:
    plt = _pyplot()
    keys = list(study.space)
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for t in trials:
            value = (
                t.curves.get(metric, [])[-1][1] if t.status == TrialStatus.COMPLETED and t.curves.get(metric) else None
            )
            if value is None or key not in t.values:
                continue
            x = t.values[key]
            marker = "s" if t.baseline is not None else "o"
            ax.scatter(
                [x if isinstance(x, (int, float)) else str(x)],
                [value],
                marker=marker,
                color="black" if t.baseline == 0 else "tab:blue",
            )
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{study.name}: {metric} of each completed trial (squares: baselines, black: the control)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _optuna_plots(study, out: Path) -> tuple[list[str], list[str]]:
    """Optuna's own parallel-coordinate and importance plots of the search trials."""
    import warnings

    import optuna
    from optuna.visualization import matplotlib as ovm

    from qstudy.study import study_paths

    plt = _pyplot()
    optuna_study = optuna.load_study(study_name=study.name, storage=study_paths(study)["optuna_url"])
    search_only = [t for t in optuna_study.get_trials(deepcopy=False) if "qstudy.phase" not in t.user_attrs]
    view = optuna.create_study(direction=optuna_study.direction)
    view.add_trials(search_only)
    made, notes = [], []
    for name, plot in (
        ("optuna_parallel_coordinate.png", ovm.plot_parallel_coordinate),
        ("optuna_param_importances.png", ovm.plot_param_importances),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = plot(view)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:  # too few completed trials for the plot
            notes.append(f"{name}: not drawn ({err})")
            plt.close("all")
            continue
        fig = ax.figure if hasattr(ax, "figure") else plt.gcf()
        fig.set_size_inches(8, 4.5)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made.append(name)
    return made, notes
