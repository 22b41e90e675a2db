"""Load times of medr1_demo.scan.reader.load_scan, on one thread, against their targets.

Run: .venv/bin/python benchmarks/bench_imaging.py [--runs 15]

Each figure is the median of several loads. Beside it, the same file's bare pydicom decode
(dcmread + pixel_array of one frame) or bare PIL decode is timed in the same run, so the ratio
shows what windowing, colour handling and the checks add on top of decoding.
Targets: a 512x512 CT slice within 50 ms; the 30-frame ultrasound examples_ybr_color.dcm within
300 ms.

Decompression bombs: an 8000 x 8000 PNG (60 KB of 8-bit grey, and a 16-bit one) loaded and
rendered as the page does, each in a fresh process; printed: the peak memory above that
process's idle (target <= 300 MB) and the time.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread, before numpy loads

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import pixel_array
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from medr1_demo.scan.reader import load_scan  # noqa: E402


def median_ms(action, runs: int) -> float:
    action()  # warm: imports, decoder plugins, file cache
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def write_ct_slice(path: Path) -> Path:
    """A CT_small-like slice at 512x512: int16 stored values, rescale to Hounsfield units."""
    yy, xx = np.mgrid[-256:256, -256:256]
    hu = np.where(xx**2 + yy**2 < 200**2, 40, -1000) + (xx * 2)  # a body in air, with a gradient
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
    ds.Modality, ds.RescaleSlope, ds.RescaleIntercept = "CT", 1, -1024
    ds.set_pixel_data((hu + 1024).astype(np.int16), "MONOCHROME2", 16)
    ds.save_as(path, enforce_file_format=True)
    return path


def bare_dicom(path: Path, index: int | None):
    return lambda: pixel_array(dcmread(path), index=index)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args(argv).runs
    with tempfile.TemporaryDirectory() as folder:
        ct = write_ct_slice(Path(folder) / "ct512")
        png = Path(folder) / "photo"
        Image.effect_noise((512, 512), 40).convert("RGB").save(png, format="PNG")
        us = Path(get_testdata_file("examples_ybr_color.dcm", download=False))
        cases = [  # name, file, full load, bare decode, target in ms
            ("CT 512x512 int16, rescale + window", ct, lambda: load_scan(ct),
             bare_dicom(ct, None), 50.0),
            ("US 30 frames JPEG YBR, middle frame", us, lambda: load_scan(us),
             bare_dicom(us, 15), 300.0),
            ("CT 512x512, lung preset", ct, lambda: load_scan(ct, window="lung"),
             bare_dicom(ct, None), None),
            ("PNG 512x512 RGB (training path)", png, lambda: load_scan(png).image,
             lambda: Image.open(png).convert("RGB"), None),
        ]  # fmt: skip
        print(f"{'case':40} {'load_scan':>10} {'bare decode':>12} {'ratio':>6}  target")
        met = True
        for name, _path, full, bare, target in cases:
            ours, base = median_ms(full, runs), median_ms(bare, runs)
            verdict = "-"
            if target is not None:
                verdict = f"{target:.0f} ms {'met' if ours <= target else 'MISSED'}"
                met &= ours <= target
            print(f"{name:40} {ours:8.2f} ms {base:9.2f} ms {ours / base:6.2f}  {verdict}")
        met &= bombs(Path(folder))
    print("all targets met" if met else "some targets missed")
    return 0 if met else 1


BOMB_TARGET_MB = 300.0


def bombs(folder: Path) -> bool:
    """Peak memory of rendering 8000 x 8000 PNG bombs, each in its own process."""
    import json
    import subprocess

    quiet = np.zeros((8000, 8000), dtype=np.uint8)
    files = {"8-bit": folder / "bomb8.png", "16-bit": folder / "bomb16.png"}
    Image.fromarray(quiet).save(files["8-bit"], optimize=True)
    Image.fromarray(quiet.astype(np.uint16)).save(files["16-bit"])
    del quiet
    script = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from medr1_demo.scan.reader import open_scan\n"
        "def peak_mb():\n"
        "    for line in Path('/proc/self/status').read_text().splitlines():\n"
        "        if line.startswith('VmHWM:'):\n"
        "            return int(line.split()[1]) / 1024\n"
        "idle = peak_mb(); began = time.perf_counter()\n"
        "scan = open_scan(sys.argv[1]).picture()\n"
        "print(json.dumps({'above': peak_mb() - idle, 'seconds': time.perf_counter() - began,"
        " 'size': scan.image.size}))\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    met = True
    for name, path in files.items():
        out = subprocess.run([sys.executable, "-c", script, str(path), root],
                             capture_output=True, text=True, check=True, cwd=root)  # fmt: skip
        found = json.loads(out.stdout.strip().splitlines()[-1])
        ok = found["above"] <= BOMB_TARGET_MB
        met &= ok
        print(f"PNG bomb 8000x8000 {name} ({path.stat().st_size / 1e3:.0f} KB): peak "
              f"{found['above']:.0f} MB above idle in {found['seconds']:.2f} s, shown at "
              f"{found['size'][0]}x{found['size'][1]}  {BOMB_TARGET_MB:.0f} MB "
              f"{'met' if ok else 'MISSED'}")  # fmt: skip
    return met


if __name__ == "__main__":
    raise SystemExit(main())
