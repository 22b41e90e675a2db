"""`python -m trainer demo`: rebuild the bundled demo policy from scratch, on CPU.

    python -m trainer demo --out assets/demo-policy           # ~40 min on 2 cores (docs/benchmarks.md)
    python -m trainer demo --out runs/weak --sft_flags "--max_steps 40"   # any recipe override

One recipe (`configs/demo/policy.yaml`, naming `configs/demo/sft.yaml` and `grpo.yaml`) and this
command make the policy the app serves when no model is named:

1. phantom data: `trainer.phantoms.synth` writes train/test splits (reused when an identical set is there);
2. the base: a tiny Qwen2-VL with random weights (`medr1_demo.policy.tiny`), its tokenizer trained on the
   Med-R1 prompts plus the phantom questions and rationales, so words are single tokens;
3. SFT warm start on both templates (each record once as a thinking row with its rationale, once
   as a no-thinking row);
4. GRPO with Med-R1's rewards, `format` checking each completion against its own row's mode;
5. `python -m trainer eval` on the held-out test split after SFT and after GRPO, both modes;
6. the final folder: only what the engine loads (weights, config, tokenizer, processor, chat
   template) and `medr1_policy.json` with the data counts, recipe, metrics and a description.

Intermediate runs live under `--work` (default `runs/demo`, git-ignored), with what GRPO changed
on the held-out split (`grpo_effect.csv`/`.png`) and the training curves of each run. The folder named by
`--out` is replaced only when the new policy meets the recipe's targets (or with `--force`); the
exit status is 1 when a target is missed.
"""

import argparse
import json
import math
import shlex
import shutil
import sys
import time
from pathlib import Path

import yaml

from medr1_demo.policy.checkpoint import METADATA_FILE
from medr1_demo.protocol import MODES, THINKING, parse_output
from trainer.experiments import validation
from trainer.experiments.demo_report import print_summary, write_effect
from trainer.phantoms.synth import GENERATOR

DEFAULT_RECIPE = "configs/demo/policy.yaml"
BASE_MODEL = "tiny Qwen2-VL (random init)"
DESCRIPTION = "demo policy trained on synthetic phantoms"
SFT_DESCRIPTION = "demo policy after SFT only (the served demo policy before its GRPO stage)"
GRPO_DESCRIPTION = "demo policy after its GRPO stage (not served: SFT beat it on validation)"
# Said in the model panel when the build serves its SFT warm start: GRPO did not help this time.
SFT_SERVED = "SFT only; its GRPO stage did not improve it on the validation split"
# What the engine reads from a checkpoint folder; optimizer state, trainer state, training
# arguments and curves stay in the work folder.
SERVED_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "processor_config.json",
    "chat_template.jinja",
)
SECTIONS = ("synth", "image_size", "base", "sft", "grpo", "eval", "targets")


class DemoError(Exception):
    """The build cannot go on; str(err) says why in plain words."""


def read_recipe(path: str) -> dict:
    """The pipeline recipe, checked for the sections this command needs."""
    try:
        recipe = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise DemoError(f"cannot read the recipe {path}: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        raise DemoError(f"the recipe {path} is not valid YAML: {err}") from err
    missing = [s for s in SECTIONS if not isinstance(recipe, dict) or s not in recipe]
    if missing:
        raise DemoError(f"the recipe {path} lacks: {', '.join(missing)}")
    for stage in ("sft", "grpo"):
        if not Path(recipe[stage]).is_file():
            raise DemoError(f"the {stage} recipe {recipe[stage]} named in {path} does not exist")
    return recipe


def stage(number: int, title: str) -> None:
    print(f"\n=== [{number}/6] {title}", flush=True)


# ------------------------------------------------------------------------------------ stages


def make_data(settings: dict, folder: Path) -> dict:
    """Phantom train/test splits in `folder`; an identical earlier set is reused."""
    from trainer.phantoms import synth

    wanted = {
        "version": synth.GENERATOR_VERSION,
        "n": settings["n"],
        "seed": settings["seed"],
        "image_size": settings["image_size"],
        "test_fraction": settings["test_fraction"],
        "shuffle_options": False,
        "dicom": False,
    }
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if all(manifest.get(k) == v for k, v in wanted.items()):
            print(f"reusing the phantoms in {folder}")
            return manifest
        shutil.rmtree(folder)
    # PNG only: the DICOM copies are for the app's gallery and the scan reader's tests.
    return synth.write_dataset(
        folder,
        settings["n"],
        settings["seed"],
        settings["test_fraction"],
        settings["image_size"],
        dicom=False,
    )


def make_base(sizes: dict, image_size: int, train_file: Path, folder: Path) -> int:
    """The randomly initialised tiny Qwen2-VL; returns its parameter count."""
    from safetensors import safe_open

    from medr1_demo.policy.tiny import build_tiny_checkpoint

    records = json.loads(train_file.read_text(encoding="utf-8"))
    texts = [text for r in records for text in (r["problem"], r["rationale"])]
    if folder.exists():
        shutil.rmtree(folder)
    pixels = image_size * image_size
    build_tiny_checkpoint(folder, min_pixels=pixels, max_pixels=pixels, corpus_extra=texts, **sizes)
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        shapes = [weights.get_slice(k).get_shape() for k in weights.keys()]  # noqa: SIM118
    return sum(math.prod(shape) for shape in shapes)


def train(kind: str, recipe: str, model: Path, data: Path, out: Path, image_size: int, flags):
    """`python -m trainer sft|grpo --config RECIPE` from `model` into `out`; its metadata."""
    from trainer.train import grpo, sft

    argv = ["--config", recipe, "--model_name_or_path", str(model), "--data_files", str(data)]
    argv += ["--output_dir", str(out), "--image_size", str(image_size), *flags]
    if out.exists():
        shutil.rmtree(out)  # a stale checkpoint-N would otherwise be resumed or mixed in
    status = (sft if kind == "sft" else grpo).main(argv)
    if status != 0:
        raise DemoError(f"{kind.upper()} stopped (exit status {status}); see the messages above")
    return json.loads((out / METADATA_FILE).read_text(encoding="utf-8"))


def evaluate(
    model: Path, test_file: Path, out: Path, image_size: int, settings: dict, modes=MODES
) -> dict:
    """`python -m trainer eval` on the test split; per mode accuracy, format and rationale rate."""
    from trainer.eval import evaluate as evaluator
    from trainer.eval.run_folder import RESULTS, read_results

    argv = ["--model", str(model), "--data", str(test_file), "--out", str(out), "--overwrite"]
    argv += ["--image_size", str(image_size), "--batch_size", str(settings["batch_size"])]
    argv += ["--max_new_tokens", str(settings["max_new_tokens"]), "--modes", *modes]
    if evaluator.main(argv) != 0:
        raise DemoError(f"the evaluation of {model} failed; see the messages above")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    figures = {}
    for mode in modes:
        overall = summary["results"][mode]["overall"]
        figures[mode] = {
            "items": overall["items"],
            "accuracy": overall["accuracy"],
            "format_kept": overall["format_kept"],
            "by_question_type": {
                name: tally["accuracy"]
                for name, tally in summary["results"][mode]["question_type"].items()
            },
        }
    if THINKING in modes:
        rows = [r for r in read_results(out / RESULTS) if r["mode"] == THINKING]
        with_rationale = sum(
            1 for r in rows if parse_output(r["raw"], THINKING, r["n_options"]).rationale
        )
        figures[THINKING]["rationale"] = with_rationale / len(rows) if rows else None
    agreement = summary.get("agreement") or {}
    figures["agreement"] = agreement.get("rate")
    return figures


def missed_targets(figures: dict, targets: dict) -> list[str]:
    """The targets the evaluated policy misses, in words (empty: all met)."""
    missed = []
    for mode in MODES:
        for key in ("accuracy", "format_kept", "rationale"):
            value, target = figures[mode].get(key), targets.get(key)
            if target is None or (key == "rationale" and mode != THINKING):
                continue
            if value is None or value < target:
                shown = "none" if value is None else f"{100 * value:.1f}%"
                missed.append(f"{mode} {key} {shown} < {100 * target:.0f}%")
    return missed


def write_policy(run: Path, out: Path, metadata: dict) -> int:
    """Copy the served files of `run` into `out` (replaced) with `metadata`; the bytes written."""
    building = out.with_name(out.name + ".building")
    if building.exists():
        shutil.rmtree(building)
    building.mkdir(parents=True)
    for name in SERVED_FILES:
        if (run / name).exists():
            shutil.copy2(run / name, building / name)
    (building / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    building.rename(out)
    return sum(f.stat().st_size for f in out.iterdir())


# ------------------------------------------------------------------------------------ command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer demo",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", default="assets/demo-policy", help="the finished policy folder")
    parser.add_argument(
        "--sft_out",
        default="assets/demo-policy-sft",
        help="the SFT-only policy beside the served one ('' for none; not written when the SFT "
        "policy is the one served)",
    )
    parser.add_argument(
        "--grpo_out",
        default="assets/demo-policy-grpo",
        help="GRPO's best checkpoint on validation beside the served one when the SFT policy is "
        "served ('' for none), to see what GRPO changed",
    )
    parser.add_argument("--recipe", default=DEFAULT_RECIPE, help="the pipeline recipe")
    parser.add_argument("--work", default="runs/demo", help="data and intermediate runs")
    parser.add_argument(
        "--sft_flags", default="", help='extra SFT recipe flags, e.g. "--max_steps 40"'
    )
    parser.add_argument("--grpo_flags", default="", help="extra GRPO recipe flags")
    parser.add_argument(
        "--force", action="store_true", help="write --out even when a target is missed"
    )
    return parser


def build(args, argv: list[str]) -> tuple[dict, list[str]]:
    """Run the six stages; the policy's metadata and the missed targets."""
    recipe = read_recipe(args.recipe)
    work = Path(args.work)
    size = int(recipe["image_size"])
    seconds: dict[str, float] = {}
    started = clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 1)
        clock = now

    stage(1, f"phantom data ({recipe['synth']['n']} items) -> {work / 'data'}")
    manifest = make_data(recipe["synth"], work / "data")
    train_file, test_file = work / "data" / "train.json", work / "data" / "test.json"
    fit_file, val_file = validation.split(train_file, recipe.get("validation", 0.05), work / "data")
    lap("data")
    stage(2, f"base model: {BASE_MODEL}")
    parameters = make_base(recipe["base"], size, train_file, work / "base")
    print(f"{parameters / 1e6:.2f} M parameters")
    lap("base")
    stage(3, f"SFT warm start ({recipe['sft']})")
    sft_flags, grpo_flags = shlex.split(args.sft_flags), shlex.split(args.grpo_flags)
    sft_meta = train("sft", recipe["sft"], work / "base", fit_file, work / "sft", size, sft_flags)
    lap("sft")
    stage(4, "evaluation after SFT (validation split, then the held-out test split)")
    sft_val = evaluate(work / "sft", val_file, work / "val-sft", size, recipe["eval"])
    after_sft = evaluate(work / "sft", test_file, work / "eval-sft", size, recipe["eval"])
    lap("eval_sft")
    stage(5, f"GRPO with Med-R1's rewards ({recipe['grpo']})")
    grpo_meta = train("grpo", recipe["grpo"], work / "sft", fit_file, work / "grpo", size,
                      grpo_flags)  # fmt: skip
    lap("grpo")
    stage(6, "choosing the checkpoint on the validation split; the choice on the test split")
    on_validation = {
        run: evaluate(run, val_file, work / f"val-{run.name}", size, recipe["eval"])
        for run in validation.checkpoints(work / "grpo")
    }
    chosen, why = validation.choose(sft_val, on_validation)
    print(why)
    best_grpo = max(on_validation, key=lambda run: validation.mean_accuracy(on_validation[run]))
    grpo_test = evaluate(best_grpo, test_file, work / "eval-grpo", size, recipe["eval"])
    final = after_sft if chosen is None else grpo_test
    write_effect(after_sft, grpo_test, work)
    lap("eval_grpo")
    missed = missed_targets(final, recipe["targets"])
    metadata = {
        "format": 1,
        "method": "sft" if chosen is None else "sft+grpo",
        "mode": "both",
        "base_model": BASE_MODEL,
        "adapter": False,
        "description": DESCRIPTION if chosen is not None else f"{DESCRIPTION} ({SFT_SERVED})",
        "data": {
            "generator": GENERATOR,
            "seed": manifest["seed"],
            "items": manifest["n"],
            "train_records": manifest["splits"]["train"],
            "validation_records": len(json.loads(val_file.read_text(encoding="utf-8"))),
            "test_records": manifest["splits"]["test"],
            "drawn_at": manifest["image_size"],
            "seen_at": size,
        },
        "recipe": {
            "command": "python -m trainer demo " + shlex.join(argv),
            "pipeline": args.recipe,
            "sft": recipe["sft"],
            "grpo": recipe["grpo"],
            "sft_flags": sft_flags,
            "grpo_flags": grpo_flags,
        },
        "model": {"parameters": parameters, "sizes": recipe["base"], "image_size": size},
        "settings": {"sft": sft_meta["settings"], "grpo": grpo_meta["settings"]},
        "served": {
            "run": "sft" if chosen is None else f"grpo/{chosen.name}",
            "why": why,
            "validation": {
                "sft": sft_val,
                **{f"grpo/{run.name}": figures for run, figures in on_validation.items()},
            },
        },
        "metrics": {
            "test": final,
            "test_after_sft": after_sft,
            "test_after_grpo": grpo_test,
            "targets": recipe["targets"],
            "targets_missed": missed,
            "sft_train": sft_meta["metrics"],
            "grpo_train": grpo_meta["metrics"],
        },
        "build": {
            "seconds": seconds,
            "total_seconds": round(time.perf_counter() - started, 1),
            "torch_threads": _threads(),
        },
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    metadata["served_run"] = str(work / "sft" if chosen is None else chosen)
    metadata["best_grpo_run"] = str(best_grpo)
    return metadata, missed


# The stage not served, written beside the served policy: (method, its test figures,
# description, why). The run is filled in: "sft", or GRPO's best checkpoint.
BESIDE = {
    "sft": ("sft", "test_after_sft", SFT_DESCRIPTION,
            "the warm start of the served policy, before GRPO"),
    "grpo": ("sft+grpo", "test_after_grpo", GRPO_DESCRIPTION,
             "GRPO's best checkpoint on the validation split; the SFT policy beat it there"),
}  # fmt: skip


def beside_metadata(served: dict, stage: str, run: str) -> dict:
    """The metadata of the stage (`sft` or `grpo`) written beside the served policy."""
    method, figures, description, why = BESIDE[stage]
    metrics = dict(served["metrics"], test=served["metrics"][figures])
    return dict(
        served, method=method, metrics=metrics, description=description,
        served={"run": run, "why": why},
    )  # fmt: skip


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        metadata, missed = build(args, argv)
    except DemoError as err:
        print(f"demo: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ndemo: interrupted.", file=sys.stderr)
        return 130
    print_summary(metadata)
    out, work = Path(args.out), Path(args.work)
    if missed and not args.force:
        print(f"\nmissed: {'; '.join(missed)}", file=sys.stderr)
        print(f"{out} left as it was; the run is in {work / 'grpo'}", file=sys.stderr)
        return 1
    served, best_grpo = Path(metadata.pop("served_run")), Path(metadata.pop("best_grpo_run"))
    size = write_policy(served, out, metadata)
    print(f"wrote {out} ({size / 1e6:.1f} MB): {metadata['served']['why']}")
    # The other stage beside it, so the page can compare the two (`configs/app.yaml`); the
    # folder of the stage that is not written is removed, so an earlier build's cannot linger.
    for other, written in ((args.sft_out, served != work / "sft"),
                           (args.grpo_out, served == work / "sft")):  # fmt: skip
        if other and not written:
            shutil.rmtree(other, ignore_errors=True)
    if args.sft_out and served != work / "sft":
        before = beside_metadata(metadata, "sft", "sft")
        size = write_policy(work / "sft", Path(args.sft_out), before)
        print(f"wrote {args.sft_out} ({size / 1e6:.1f} MB): the same build before GRPO")
    if args.grpo_out and served == work / "sft":
        after = beside_metadata(metadata, "grpo", f"grpo/{best_grpo.name}")
        size = write_policy(best_grpo, Path(args.grpo_out), after)
        print(f"wrote {args.grpo_out} ({size / 1e6:.1f} MB): GRPO's best checkpoint, not served")
    if missed:
        print(f"missed: {'; '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
