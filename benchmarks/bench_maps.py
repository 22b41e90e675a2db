"""What a relevance map costs, relative to the answer it explains, measured side by side in one run.

For each gallery case (`assets/examples`), both modes answer (`engine.answer`, no checks), then
both modes' relevance maps are computed from those answers (`relevance.with_maps`, what
`maps=True` adds); the two are timed alternately, `--repeats` times, and the ratio of the medians
is printed per case and over all cases (sum of medians). Pinned to one core by default, as the
project's CPU benchmarks are.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_maps.py
    .venv/bin/python benchmarks/bench_maps.py --model assets/demo-policy-grpo --repeats 5
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "assets" / "demo-policy"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    args = parser.parse_args(argv)
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import torch

    from medr1_demo.policy import relevance
    from medr1_demo.policy.engine import PolicyEngine
    from medr1_demo.protocol import Question
    from medr1_demo.scan.reader import load_scan

    torch.set_num_threads(1 if not args.all_cores else torch.get_num_threads())
    engine = PolicyEngine.load(args.model, device="cpu")
    folder = ROOT / "assets" / "examples"
    cases = []
    for entry in json.loads((folder / "examples.json").read_text(encoding="utf-8")):
        image = load_scan(folder / entry["file"]).image
        cases.append((entry, image, Question.ask(entry["question"], entry["options"])))
    engine.answer(cases[0][1], cases[0][2], checks=[])  # warm-up
    print(f"{'case':<42}{'answer s':>10}{'maps s':>9}{'ratio':>8}")
    answered_total, mapped_total = 0.0, 0.0
    for entry, image, question in cases:
        answer_times, map_times = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            answers = engine.answer(image, question, checks=[])
            answer_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            relevance.with_maps(engine, image, question, answers)
            map_times.append(time.perf_counter() - started)
        answered, mapped = statistics.median(answer_times), statistics.median(map_times)
        answered_total, mapped_total = answered_total + answered, mapped_total + mapped
        label = f"{entry['modality']} · {entry['question_type']}"[:41]
        print(f"{label:<42}{answered:>10.3f}{mapped:>9.3f}{mapped / answered:>8.2f}")
    ratio = mapped_total / answered_total
    print(
        f"all {len(cases)} cases: maps {mapped_total:.2f} s / answers {answered_total:.2f} s "
        f"= {ratio:.2f} (both modes; median of {args.repeats} per case)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
