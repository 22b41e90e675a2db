"""Command dispatcher: `python -m trainer <command> [options]`; with no command it lists them.

Each command lives in its own module with a `main(argv)` function, imported only when chosen so
that `python -m trainer synth` does not pay for importing TRL.
"""

import importlib
import sys

COMMANDS = {
    "grpo": (
        "trainer.train.grpo",
        "GRPO with Med-R1's rewards (thinking or no-thinking): --config recipe.yaml",
    ),
    "sft": (
        "trainer.train.sft",
        "supervised baseline / warm start on the same data: --config recipe.yaml",
    ),
    "eval": (
        "trainer.eval.evaluate",
        "accuracy tables per file, modality and question type, both modes",
    ),
    "matrix": (
        "trainer.eval.matrix",
        "cross-generalisation heatmaps from several checkpoints x test splits",
    ),
    "synth": (
        "trainer.phantoms.synth",
        "procedurally generated phantom scans in Med-R1 split format",
    ),
    "validate": (
        "trainer.train.validate",
        "check a dataset's records before training (file:index: reason)",
    ),
    "merge": ("trainer.train.merge", "merge a LoRA adapter into full weights the app can serve"),
    "demo": (
        "trainer.experiments.demo_policy",
        "rebuild the bundled demo policy on CPU: synth, SFT, GRPO, eval",
    ),
    "weak-start": (
        "trainer.experiments.weak_start",
        "GRPO from a weak SFT warm start, over seeds and thread counts (docs/grpo-phantoms.md)",
    ),
}


def print_commands() -> None:
    print("usage: python -m trainer <command> [options]\n\ncommands:")
    for name, (_, summary) in COMMANDS.items():
        print(f"  {name:<9} {summary}")
    print("\n`python -m trainer <command> --help` shows a command's options.")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print_commands()
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n", file=sys.stderr)
        print_commands()
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
