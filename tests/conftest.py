"""Shared pytest fixtures: tiny Qwen2-VL checkpoints built once per test session, offline.

Run the suite with `.venv/bin/python -m pytest`. Checkpoints come from `medr1_demo.policy.tiny` (about
0.2 M parameters, built in well under a second), so nothing is downloaded.
"""

from pathlib import Path

import pytest

from medr1_demo.policy.tiny import build_tiny_checkpoint

# Real Med-R1 split records, in the shared folder that sits beside the repository in CI.
ROOT = Path(__file__).resolve().parents[1]
MEDR1_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "omnimed_sample.json"


@pytest.fixture(scope="session")
def medr1_sample() -> Path:
    """The 30 real Med-R1 records (`shared/reference/omnimed_sample.json`); skips when absent."""
    if not MEDR1_SAMPLE.exists():
        pytest.skip(f"the Med-R1 sample records are not at {MEDR1_SAMPLE}")
    return MEDR1_SAMPLE


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny checkpoint in today's `save_pretrained` layout (read-only: copy before changing)."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "current", seed=0)


@pytest.fixture(scope="session")
def tiny_legacy_checkpoint(tmp_path_factory):
    """The same weights in the released Med-R1 checkpoints' older layout."""
    return build_tiny_checkpoint(
        tmp_path_factory.mktemp("tiny") / "legacy", seed=0, layout="legacy"
    )


def answering_checkpoint(source: Path, out: Path, letter: str = "A") -> Path:
    """A copy of a tiny checkpoint whose greedy output is always `<answer>{letter}</answer>`.

    Attention and MLP outputs are zeroed, so the last hidden state is the last token's embedding;
    the (tied) embeddings and final norm are set so each token of the answer, starting from the
    generation prompt's last token, scores its successor highest (a symmetric form with negative
    eigenvalues, since the output layer shares the embedding), ending at <|im_end|>.
    """
    import shutil

    import torch
    from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration

    shutil.copytree(source, out)
    model = Qwen2VLForConditionalGeneration.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    start = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"][-1]
    answer = tokenizer(f"<answer>{letter}</answer>", add_special_tokens=False)["input_ids"]
    chain = [start, *answer, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert len(set(chain)) == len(chain), "each token of the answer must be distinct"
    n = len(chain)
    scores_ = torch.zeros(n, n)
    for k in range(n - 1):  # token k scores token k+1 highest: k+1 > k (its predecessor) > 0
        scores_[k, k + 1] = scores_[k + 1, k] = k + 1.0
    scores_.fill_diagonal_(-10.0)
    values, vectors = torch.linalg.eigh(scores_)
    language = model.model.language_model
    with torch.no_grad():
        for layer in language.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed = language.embed_tokens.weight
        embed[:, :n] = 0
        for k, token in enumerate(chain):
            embed[token] = 0
            embed[token, :n] = vectors[k] * values.abs().sqrt()
        language.norm.weight.zero_()
        language.norm.weight[:n] = values.sign()
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def answer_a(tiny_checkpoint, tmp_path_factory):
    """A tiny checkpoint whose greedy output is always `<answer>A</answer>`, whatever it is shown."""
    return answering_checkpoint(tiny_checkpoint, tmp_path_factory.mktemp("answer-a") / "policy")


# ------------------------------------------------------------------------- the clinician app
# Fixtures of test_ui.py, test_server.py and test_browser.py: real DICOM files (pydicom's own,
# read offline), a real engine, and one real `python app.py` shared by the server and browser tests.
# Imports stay inside the fixtures so the fixtures above load without them.

# Planted in a test DICOM; none may reach the page, an API response or a log.
PLANTED_IDENTIFIERS = (
    "Plantedname^Jane",
    "Plantedname",
    "PID-4471-PLANTED",
    "19510203",
    "St Planted Infirmary",
    "Plantedref",
    "ACC-PLANTED-889",
)


def _pydicom_file(name: str):
    from pathlib import Path

    from pydicom.data import get_testdata_file

    return Path(get_testdata_file(name, download=False))


@pytest.fixture(scope="session")
def ct_dicom():
    """pydicom's CT_small.dcm: one real CT slice."""
    return _pydicom_file("CT_small.dcm")


@pytest.fixture(scope="session")
def multiframe_dicom():
    """pydicom's rtdose.dcm: 15 frames."""
    return _pydicom_file("rtdose.dcm")


@pytest.fixture(scope="session")
def planted_identifiers():
    return PLANTED_IDENTIFIERS


@pytest.fixture(scope="session")
def planted_dicom(tmp_path_factory, ct_dicom):
    """CT_small.dcm with patient identifiers planted and burned-in annotation declared."""
    import pydicom

    ds = pydicom.dcmread(ct_dicom)
    ds.PatientName = "Plantedname^Jane"
    ds.PatientID = "PID-4471-PLANTED"
    ds.PatientBirthDate = "19510203"
    ds.InstitutionName = "St Planted Infirmary"
    ds.ReferringPhysicianName = "Dr^Plantedref"
    ds.AccessionNumber = "ACC-PLANTED-889"
    ds.BurnedInAnnotation = "YES"
    path = tmp_path_factory.mktemp("planted") / "planted.dcm"
    ds.save_as(path)
    return path


@pytest.fixture(scope="session")
def tiny_engine(tiny_checkpoint):
    """A real PolicyEngine on the tiny checkpoint, on the CPU."""
    from medr1_demo.policy.engine import PolicyEngine

    return PolicyEngine.load(str(tiny_checkpoint), device="cpu")


class AppServer:
    """A running `python app.py`: its URL, process, log file and upload folder."""

    def __init__(self, url, process, log, upload_dir):
        self.url, self.process, self.log, self.upload_dir = url, process, log, upload_dir

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        import subprocess

        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def launch_app(folder, *args: str, timeout: float = 90.0, extra: dict | None = None) -> AppServer:
    """`python app.py *args` on a free port with its own upload and cache folders under `folder`;
    returns once the page answers (`extra`: more environment variables). Call `.stop()` when done."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", GRADIO_TEMP_DIR=str(folder / "uploads"))
    env["HF_HUB_OFFLINE"] = "1"  # tests never reach a hub
    env.update(extra or {})
    env["MEDR1_CACHE"] = str(folder / "cache")
    env.pop("MEDR1_MODEL", None)
    log = folder / "server.log"
    app = Path(__file__).resolve().parent.parent / "app.py"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(app), "--port", str(port), *args],
            cwd=app.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = AppServer(f"http://127.0.0.1:{port}/", process, log, folder / "uploads")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode}:\n{server.log_text()}")
        try:
            with urllib.request.urlopen(server.url, timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"app.py did not answer within {timeout:.0f} s:\n{server.log_text()}")


@pytest.fixture(scope="session")
def app_server(tmp_path_factory, tiny_checkpoint):
    """One real `python app.py` on the tiny checkpoint (24/8 new tokens), shared by tests."""
    folder = tmp_path_factory.mktemp("app")
    server = launch_app(
        folder,
        "--model",
        str(tiny_checkpoint),
        "--max-new-tokens",
        "24",
        "--max-new-tokens-no-thinking",
        "8",
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def demo_engine():
    """The bundled demo policy (assets/demo-policy) loaded once, on the CPU."""
    from medr1_demo.policy.engine import PolicyEngine

    return PolicyEngine.load(str(ROOT / "assets" / "demo-policy"), device="cpu")


@pytest.fixture(scope="session")
def gallery():
    """The example gallery's cases: (picture as the model sees it, question, options, answer)."""
    import json

    from medr1_demo.scan.reader import load_scan

    folder = ROOT / "assets" / "examples"
    cases = []
    for entry in json.loads((folder / "examples.json").read_text(encoding="utf-8")):
        image = load_scan(folder / entry["file"]).image
        cases.append((image, entry["question"], entry["options"], entry["answer"]))
    return cases


# The release's 13 sub-folders of yuxianglai117/Med-R1.
SUBFOLDERS = ("VQA_CT", "VQA_MRI", "VQA_X-Ray", "VQA_US", "VQA_Dermo", "VQA_Fundus", "VQA_OCT",
              "VQA_Micro", "VQA_Anatomy_Identification", "VQA_Disease_Diagnosis",
              "VQA_Lesion_Grading", "VQA_Modality_Recognition", "VQA_Other_Bio")  # fmt: skip


@pytest.fixture(scope="session")
def release_cache(tmp_path_factory) -> Path:
    """A Hugging Face cache holding the release's 13 sub-folders, as snapshot_download leaves it."""
    cache = tmp_path_factory.mktemp("hub")
    repo = cache / "models--yuxianglai117--Med-R1"
    snapshot = repo / "snapshots" / ("0" * 40)
    for seed, name in enumerate(SUBFOLDERS):
        # init_std 0.3: untrained weights whose answers visibly depend on the policy
        build_tiny_checkpoint(snapshot / name, seed=seed, init_std=0.3)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    return cache
