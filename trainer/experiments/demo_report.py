"""What the demo-policy build reports: the held-out figures before and after GRPO, drawn and printed.

`write_effect` writes `grpo_effect.csv` and `.png` (accuracy per mode, overall and per question
type, after SFT and after GRPO) into the build's work folder; `print_summary` prints the table
and which checkpoint is served and why. Used by `python -m trainer demo`.
"""

from pathlib import Path

from medr1_demo.protocol import MODES, THINKING


def effect_rows(before: dict, after: dict) -> list[dict]:
    """Held-out accuracy after SFT and after GRPO: per mode, overall and per question type."""
    rows = []
    for mode in MODES:
        groups = {"overall": (before[mode]["accuracy"], after[mode]["accuracy"])}
        for name, value in before[mode]["by_question_type"].items():
            groups[name] = (value, after[mode]["by_question_type"].get(name))
        for group, (sft_value, grpo_value) in groups.items():
            rows.append(
                {"mode": mode, "group": group, "after_sft": sft_value, "after_grpo": grpo_value}
            )
    return rows


def write_effect(before: dict, after: dict, folder: Path) -> tuple[Path, Path]:
    """`grpo_effect.csv` and `.png` in `folder`: what GRPO changed on the held-out split."""
    import csv

    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas for PNG

    rows = effect_rows(before, after)
    table = folder / "grpo_effect.csv"
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    for axes, mode in zip(figure.subplots(1, len(MODES), sharey=True), MODES, strict=True):
        mine = [r for r in rows if r["mode"] == mode]
        x = range(len(mine))
        axes.bar([i - 0.2 for i in x], [100 * (r["after_sft"] or 0) for r in mine], 0.4,
                 label="after SFT", color="#9aa5b1")  # fmt: skip
        axes.bar([i + 0.2 for i in x], [100 * (r["after_grpo"] or 0) for r in mine], 0.4,
                 label="after GRPO", color="#2b6cb0")  # fmt: skip
        axes.set_xticks(list(x), [r["group"].replace(" ", "\n") for r in mine], fontsize=8)
        axes.set_title(f"{mode}: held-out accuracy")
        axes.set_ylim(0, 100)
        axes.grid(axis="y", alpha=0.3)
    figure.legend(*axes.get_legend_handles_labels(), loc="outside lower center", ncols=2)
    figure.supylabel("accuracy (%)")
    image = folder / "grpo_effect.png"
    figure.savefig(image, dpi=110)
    return table, image


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:5.1f}%"


def print_summary(report: dict) -> None:
    before, after = report["metrics"]["test_after_sft"], report["metrics"]["test_after_grpo"]
    print("\n=== demo policy: held-out phantom test split (greedy, both modes)")
    print(f"{'':24}{'after SFT':>12}{'after GRPO':>12}")
    for mode in MODES:
        keys = ("accuracy", "format_kept") + (("rationale",) if mode == THINKING else ())
        for key in keys:
            label = f"{mode} {key}"
            print(f"{label:24}{_pct(before[mode].get(key)):>12}{_pct(after[mode].get(key)):>12}")
    build = report["build"]
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in build["seconds"].items())
    print(f"\ntime: {build['total_seconds'] / 60:.1f} min ({timings})")
    print(f"model: {report['model']['parameters'] / 1e6:.2f} M parameters")
    print(f"served: {report['served']['run']} ({report['served']['why']})")
