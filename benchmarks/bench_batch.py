"""Benchmark: the page's `/batch` endpoint against `trainer eval`, same data and policy, one run.

A launched `python app.py` (the bundled demo policy, its shared running batch) answers a
`--n`-case phantom case list with a ZIP of its images through `/batch` (upload, unzip, ask, score,
CSV back); `trainer eval`'s loop (`trainer.eval.evaluate.evaluate`, continuous batching of 64
rows) answers the same records with the same policy loaded in this process. Both in both modes,
greedy, one CPU thread each (the server is started with OMP_NUM_THREADS=1; this process sets
torch to one thread). The model load is not timed on either side. Repeats alternate the two.

Run: `.venv/bin/python benchmarks/bench_batch.py [--n 120 --repeats 5]`
Prints items/s (one item = one case answered in both modes) of each path and page / eval
(target >= 0.9), and the two accuracies (which should agree).
"""

import argparse
import json
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere
sys.path.insert(0, str(ROOT / "tests"))  # conftest.launch_app starts the server

from medr1_demo.batch import outputs, scores  # noqa: E402
from medr1_demo.protocol import MODES  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=120, help="cases in the batch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--policy", default=str(ROOT / "assets" / "demo-policy"))
    args = parser.parse_args(argv)

    import torch
    from conftest import launch_app
    from gradio_client import Client, handle_file

    from medr1_demo.policy.engine import PolicyEngine
    from trainer.eval import evaluate
    from trainer.phantoms.synth import write_dataset

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    write_dataset(work / "data", 2 * args.n, seed=7, test_fraction=0.5, image_size=64,
                  dicom=False, progress=False)  # fmt: skip
    records = json.loads((work / "data" / "test.json").read_text())[: args.n]
    (work / "cases.json").write_text(json.dumps(records))
    with zipfile.ZipFile(work / "images.zip", "w") as archive:
        for image in dict.fromkeys(r["image"] for r in records):
            archive.write(work / "data" / image, image)

    engine = PolicyEngine.load(args.policy, device="cpu")
    items, problems = evaluate.collect_items([str(work / "cases.json")], str(work / "data"))
    assert len(items) == args.n and not problems
    settings = evaluate.Settings(MODES, 64, 256, progress=False)
    (work / "app").mkdir()
    server = launch_app(work / "app", "--model", args.policy)
    client = Client(server.url, verbose=False)
    page, trainer, accuracy = [], [], {}
    try:
        for repeat in range(args.repeats):
            started = time.perf_counter()
            csv_path = client.predict(
                cases=handle_file(str(work / "cases.json")),
                images=handle_file(str(work / "images.zip")),
                modes=list(MODES), checks=[], api_name="/batch",
            )  # fmt: skip
            page.append(args.n / (time.perf_counter() - started))
            accuracy["page"] = outputs.read_accuracy(csv_path)

            folder = work / f"eval-{repeat}"
            started = time.perf_counter()
            results, _ = evaluate.evaluate(items, folder, lambda: engine, settings, {})
            trainer.append(args.n / (time.perf_counter() - started))
            summary = scores.summarise(results, MODES)["results"]
            accuracy["eval"] = {m: summary[m]["overall"]["accuracy"] for m in MODES}
            print(f"repeat {repeat + 1}: page {page[-1]:.2f} items/s, eval {trainer[-1]:.2f}")
    finally:
        server.stop()
        print("\n".join(line for line in server.log_text().splitlines() if "batch:" in line))
    best_page, best_eval = max(page), max(trainer)
    print(f"{args.n} cases, both modes, {Path(args.policy).name}, 1 thread each, best of "
          f"{args.repeats}")  # fmt: skip
    print(f"page /batch  : {best_page:.2f} items/s")
    print(f"trainer eval : {best_eval:.2f} items/s")
    print(f"page / eval  : {best_page / best_eval:.2f}x (target >= 0.9)")
    for name, values in accuracy.items():
        shown = ", ".join(f"{m} {100 * a:.1f}%" for m, a in values.items())
        print(f"accuracy {name:5}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
