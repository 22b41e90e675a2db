"""Benchmark: `python -m trainer eval`'s path against a loop run as Med-R1's official scripts do.

Both answer every test item in both modes on the same engine, model, data and images:

- eval path: `trainer.eval.evaluate.evaluate` (all files and both modes in one pass, continuous
  batching of 64 rows, rows by mode and longest prompt first, images read ahead, results written
  as JSONL);
- official loop: one file at a time, one mode per pass, batches of 64 in file order, no sorting;
- also shown: the eval path with `--plain_batches` (fixed batches of 64, each until its longest
  row ends), to show what continuous batching adds.

Completion lengths. A randomly initialised policy never stops on its own, so by default each row
stops at a length fixed by its prompt text (a hash), drawn like a trained policy's: thinking rows
40-199 tokens with one in ten running to the 256-token limit, no-thinking rows 6-11 tokens
(`<answer>C</answer>` and end of text). The limits reach the engine as per-row token limits with
end-of-text suppressed, so all paths do exactly the same rows with the same lengths and only the
scheduling differs. `--lengths full` makes every row run to `--max_new_tokens` instead.
`--model DIR` times a trained policy (e.g. assets/demo-policy) instead, greedy, with the lengths
it answers with (every path asks the same rows; answers agree up to rare floating-point
differences between batch shapes).

Data: phantom test splits (`trainer.phantoms.synth`), one file per modality, with a clinical-context
sentence of random length put before some questions so prompts vary in length (phantom questions
alone vary little). `--layout single` puts all items in one file instead.

Run: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_eval.py [--n 240 --layout both]`
Prints items/s (one item = one question answered in both modes) for each path, the best of
`--repeats` runs taken in turns, and the ratios.
"""

import argparse
import json
import random
import re
import sys
import tempfile
import time
import zlib
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from medr1_demo.config import DecodingConfig  # noqa: E402
from medr1_demo.policy.engine import PolicyEngine  # noqa: E402
from medr1_demo.policy.tiny import build_tiny_checkpoint  # noqa: E402
from medr1_demo.protocol import MODES, PROMPT_TEMPLATES, THINKING, build_prompt, solution_letter  # noqa: E402
from trainer.eval import evaluate  # noqa: E402
from trainer.train.data import open_image  # noqa: E402

CONTEXT_WORDS = [
    "patient",
    "presents",
    "with",
    "chronic",
    "pain",
    "after",
    "a",
    "fall;",
    "prior",
    "imaging",
    "unremarkable;",
    "history",
    "of",
    "hypertension",
    "and",
    "smoking;",
    "referred",
    "by",
    "the",
    "emergency",
    "department",
    "for",
    "further",
    "assessment",
]
THINKING_TASK = PROMPT_TEMPLATES[THINKING].split("{Question}")[1][:40]  # tells the modes apart
_ANSWER = re.compile(r"<answer>\s*(\w+)\s*</answer>")
EXACT = DecodingConfig(exact_length=True)  # no early end-of-text: equal work


class SimulatedLengths:
    """The real engine, each row stopped at a length fixed by its prompt (see the docstring)."""

    def __init__(self, engine, full: bool):
        self.engine, self.full = engine, full
        self.processor, self.info = engine.processor, engine.info

    def length(self, prompt: str, limit: int) -> int:
        if self.full:
            return limit
        h = zlib.crc32(prompt.encode())
        if THINKING_TASK in prompt:
            return limit if h % 10 == 0 else min(limit, 40 + h % 160)
        return min(limit, 6 + h % 6)

    def complete(self, images, prompts, *, max_new_tokens, settings=None):
        limits = [self.length(p, max_new_tokens) for p in prompts]
        return self.engine.complete(images, prompts, max_new_tokens=limits, settings=EXACT)

    def complete_many(self, requests, *, settings=None, **kwargs):
        requests = ((i, p, self.length(p, limit)) for i, p, limit in requests)
        return self.engine.complete_many(requests, settings=EXACT, **kwargs)


def make_data(root: Path, n: int, seed: int, layout: str) -> list[Path]:
    """Phantom test files with questions of varied length; returns the files."""
    from trainer.phantoms.synth import write_dataset

    write_dataset(
        root, n, seed=seed, test_fraction=0.5, image_size=224, dicom=False, progress=False
    )
    rng = random.Random(seed)
    folder = root / "Splits" / "modality" / "test"
    files = sorted(folder.glob("*_test.json")) if layout == "per-modality" else [root / "test.json"]
    for path in files:
        records = json.loads(path.read_text())
        for record in records:
            if rng.random() < 0.6:  # a context sentence of 4-60 words before the question
                words = [rng.choice(CONTEXT_WORDS) for _ in range(rng.randint(4, 60))]
                record["problem"] = f"Context: {' '.join(words)}. {record['problem']}"
        path.write_text(json.dumps(records))
    return files


def official_loop(engine, files: list[Path], image_root: Path, batch: int, tokens: int) -> int:
    """One file at a time, one mode per pass, batches in file order; returns the answers scored."""
    correct = answered = 0
    for path in files:
        records = json.loads(path.read_text())
        for mode in MODES:
            for start in range(0, len(records), batch):
                chunk = records[start : start + batch]
                images = [open_image(str(image_root / r["image"]), 384) for r in chunk]
                prompts = [build_prompt(r["problem"], mode) for r in chunk]
                outputs = engine.complete(images, prompts, max_new_tokens=tokens)
                for record, (text, _) in zip(chunk, outputs, strict=True):
                    match = _ANSWER.search(text)
                    correct += bool(match) and match.group(1) == solution_letter(record["solution"])
                    answered += 1
    return answered


def eval_path(engine, files, image_root, batch, tokens, folder: Path, plain=False) -> int:
    """`trainer eval`'s path (with `plain`: `--plain_batches`); returns the answers scored."""
    items, problems = evaluate.collect_items([str(f) for f in files], str(image_root))
    assert not problems, problems
    settings = evaluate.Settings(
        MODES, batch, tokens, 384, progress=False, continuous_batching=not plain
    )
    results, _ = evaluate.evaluate(items, folder, lambda: engine, settings, {})
    return len(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=240, help="phantom items (half are test items)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_new_tokens", type=int, default=256)
    parser.add_argument("--lengths", choices=["simulated", "full"], default="simulated")
    parser.add_argument("--model", help="a trained policy folder, timed with its own lengths")
    parser.add_argument("--layout", choices=["per-modality", "single", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    layouts = ["per-modality", "single"] if args.layout == "both" else [args.layout]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.model:
            engine = PolicyEngine.load(args.model, device=args.device)
            timed, lengths = engine, "the policy's own"
        else:
            policy = build_tiny_checkpoint(tmp / "policy")
            engine = PolicyEngine.load(str(policy), device=args.device)
            timed, lengths = SimulatedLengths(engine, args.lengths == "full"), args.lengths
        warm_up = [build_prompt("Which organ is shown? A)Liver, B)Kidney", m) for m in MODES]
        engine.complete([Image.new("RGB", (384, 384))] * 2, warm_up, max_new_tokens=16)
        print(
            f"{args.model or 'tiny Qwen2-VL'} ({engine.info.parameters:,} parameters) on "
            f"{engine.info.device}, "
            f"batch {args.batch_size}, max_new_tokens {args.max_new_tokens}, "
            f"completion lengths: {lengths}"
        )
        for layout in layouts:
            data = tmp / f"data-{layout}"
            files = make_data(data, args.n, args.seed, layout)
            n_items = sum(len(json.loads(f.read_text())) for f in files)
            chars = sorted(len(r["problem"]) for f in files for r in json.loads(f.read_text()))
            print(
                f"\n{layout}: {len(files)} file(s), {n_items} items, question length "
                f"{chars[0]}-{chars[-1]} characters (median {chars[len(chars) // 2]})"
            )
            common = (timed, files, data, args.batch_size, args.max_new_tokens)
            runs = {
                "official loop": lambda k, c=common: official_loop(*c),
                "trainer eval": lambda k, c=common, f=tmp / f"e-{layout}": eval_path(
                    *c, f / str(k)
                ),
                "eval, plain batches": lambda k, c=common, f=tmp / f"p-{layout}": eval_path(
                    *c, f / str(k), plain=True
                ),
            }
            best = dict.fromkeys(runs, float("inf"))
            for k in range(args.repeats):  # paths take turns, so drift hits them alike
                for name, run in runs.items():
                    open_image.cache_clear()  # every path reads its images itself
                    start = time.perf_counter()
                    answers = run(k)
                    best[name] = min(best[name], time.perf_counter() - start)
                    assert answers == 2 * n_items, (name, answers)
            rates = {name: n_items / seconds for name, seconds in best.items()}
            for name, rate in rates.items():
                print(
                    f"  {name:<26} {rate:7.2f} items/s  ({best[name]:.1f} s, best of {args.repeats})"
                )
            base = rates["official loop"]
            print(f"  ratio trainer eval / official loop:  {rates['trainer eval'] / base:.2f}x")
            print(
                f"  ratio plain batches / official loop: {rates['eval, plain batches'] / base:.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
