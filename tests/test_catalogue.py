"""The whole Med-R1 release served through the catalogue, from a hub cache laid out as the release.

Run: `.venv/bin/python -m pytest tests/test_catalogue.py -q`. The cache holds 13 tiny checkpoints
in the release's sub-folders (`yuxianglai117/Med-R1/VQA_CT`, ...), each with other random
weights, and the hub is offline: the catalogue, routing, loading on first use, least-recently-used
unloading and the page's picker and comparison all run as they would on a Space.
"""

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from medr1_demo.config import AppConfig, DecodingConfig, ServerConfig, load_config
from medr1_demo.policy.catalogue import DICOM_MODALITIES, Catalogue, read_entries
from medr1_demo.policy.checkpoint import PolicyLoadError
from medr1_demo.protocol import NO_THINKING

ROOT = Path(__file__).resolve().parents[1]
REPO = "yuxianglai117/Med-R1"
from conftest import SUBFOLDERS  # noqa: E402  (the release's 13 sub-folders)

SHORT = DecodingConfig(max_new_tokens_thinking=6, max_new_tokens_no_thinking=6)


@pytest.fixture
def offline_hub(release_cache, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(release_cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return release_cache


def release_catalogue(extra=()) -> Catalogue:
    config = load_config([], {})  # configs/app.yaml's catalogue
    return Catalogue([*config.policies, *extra], online=False)


def release_handlers():
    """The API's handlers over the catalogue, its default policy loaded: (catalogue, library,
    handlers); close the library when done."""
    from app import make_backend
    from medr1_demo.policy import serving
    from medr1_demo.web.handlers import Handlers

    config = AppConfig(decoding=SHORT, server=ServerConfig(shared_batch=False))
    catalogue = release_catalogue()
    library = serving.library(catalogue, config)
    library.engine(catalogue.default.name)
    return catalogue, library, Handlers(make_backend(catalogue, library, config, "test"), config)


def test_the_default_catalogue_lists_the_release_and_its_base():
    names = [entry.name for entry in load_config([], {}).policies]
    subfolders = [e.subfolder for e in load_config([], {}).policies if e.source == REPO]
    assert sorted(subfolders) == sorted(SUBFOLDERS)
    assert "Qwen2-VL-2B-Instruct (base model)" in names
    assert all(e.image_size == 384 for e in load_config([], {}).policies if e.source == REPO)


def test_offline_and_uncached_the_catalogue_is_the_bundled_policies():
    catalogue = release_catalogue()
    assert all(entry.folder is not None for entry in catalogue.entries)
    assert catalogue.default.name == "Demo policy (phantoms)"
    # The build's other stage beside it, so a laptop can compare SFT and GRPO: here GRPO's
    # checkpoint, as the SFT policy is the one served (an SFT-only folder when GRPO is).
    assert catalogue.names == ["Demo policy (phantoms)", "Demo policy after GRPO"]


def test_a_cached_release_is_served_and_routed_by_modality(offline_hub):
    catalogue = release_catalogue()
    assert {e.subfolder for e in catalogue.entries if e.source == REPO} == set(SUBFOLDERS)
    routes = {code: catalogue.route(code)[0].subfolder for code in ("CT", "MR", "DX", "US", "OP")}
    assert routes == {"CT": "VQA_CT", "MR": "VQA_MRI", "DX": "VQA_X-Ray", "US": "VQA_US",
                      "OP": "VQA_Fundus"}  # fmt: skip
    assert set(DICOM_MODALITIES) >= {"CR", "MG", "OPT", "SM", "XC"}
    entry, why = catalogue.route("PT")  # PET: no specialist, so the default, said plainly
    assert entry == catalogue.default and "no policy here was trained on" not in why
    assert "not known" in why


def test_the_picker_switches_policy_and_the_lru_unloads(offline_hub):
    from medr1_demo.policy import serving

    config = AppConfig(server=ServerConfig(max_loaded_policies=2, shared_batch=False))
    catalogue = release_catalogue()
    library = serving.library(catalogue, config)
    image = Image.new("RGB", (64, 64), (120, 120, 120))
    answers = {}
    for name in ("Med-R1 CT", "Med-R1 MRI", "Med-R1 X-Ray"):
        engine = library.engine(name)
        assert engine.info.image_size == 384  # the release's picture size, from the catalogue
        found = engine.answer(image, "Which?", ["CT", "MRI"], settings=SHORT, checks={})
        answers[name] = found[NO_THINKING].raw
    assert len(set(answers.values())) > 1  # other weights, other answers
    assert library.loaded() == ["Med-R1 MRI", "Med-R1 X-Ray"]  # CT, the least recent, went
    assert library.engine("Med-R1 MRI") is engine or "Med-R1 MRI" in library.loaded()
    with pytest.raises(PolicyLoadError, match="no policy called"):
        library.engine("Med-R1 PET")
    library.close()
    assert library.loaded() == []


def test_a_policy_that_cannot_load_is_a_sentence_and_the_next_request_is_served(
    offline_hub, tmp_path, ct_dicom
):
    from app import make_backend
    from medr1_demo.policy import serving
    from medr1_demo.web.handlers import Handlers

    broken = tmp_path / "broken"
    shutil.copytree(offline_hub / "models--yuxianglai117--Med-R1" / "snapshots" / ("0" * 40) /
                    "VQA_CT", broken)  # fmt: skip
    (broken / "model.safetensors").write_bytes(b"not weights")
    extra = read_entries([{"name": "Broken policy", "source": str(broken)}])
    config = AppConfig(decoding=SHORT, server=ServerConfig(shared_batch=False))
    catalogue = release_catalogue(extra)
    library = serving.library(catalogue, config)
    library.engine(catalogue.default.name)
    handlers = Handlers(make_backend(catalogue, library, config, "test"), config)
    refused = handlers.answer_api(str(ct_dicom), "Which?", ["CT", "MRI"], policy="Broken policy")
    assert not refused["ok"] and "could not" in refused["error"].lower()
    assert "Traceback" not in refused["error"] and str(tmp_path) not in refused["error"]
    routed = handlers.answer_api(str(ct_dicom), "Which?", ["CT", "MRI"], policy="Auto")
    assert routed["ok"] and routed["policy"]["name"] == "Med-R1 CT"
    assert "CT scan" in routed["policy"]["why"]
    assert routed["model"]["model_id"] == REPO and routed["model"]["subfolder"] == "VQA_CT"
    compared = handlers.answer_api(str(ct_dicom), "Which?", ["CT", "MRI"], policy="Med-R1 CT",
                                   compare="Med-R1 MRI")  # fmt: skip
    assert compared["ok"] and compared["compare"]["policy"]["name"] == "Med-R1 MRI"
    assert set(compared["policies_agree"]) == {"thinking", "no-thinking"}
    library.close()


def test_auto_routes_an_mr_dicom_to_the_mri_specialist(offline_hub, tmp_path):
    from pydicom.data import get_testdata_file

    _, library, handlers = release_handlers()
    mr = get_testdata_file("MR_small.dcm", download=False)
    result = handlers.answer_api(mr, "Which?", ["CT", "MRI"], policy="Auto")
    assert result["ok"] and result["policy"]["name"] == "Med-R1 MRI"
    picture = tmp_path / "skin.png"
    Image.new("RGB", (80, 80), (180, 120, 100)).save(picture)
    pages = list(handlers.run(str(picture), None, None, "Which?", "A\nB", ["no-thinking"],
                              [], None, None, "Auto", "Dermoscopy", None))  # fmt: skip
    panel = pages[-1][9]  # the model panel (the relevance maps come after it)
    assert "Med-R1 Dermoscopy" in panel and "Dermoscopy scan" in panel
    library.close()


def test_auto_routes_a_picture_by_the_modality_the_api_names(offline_hub, tmp_path):
    _, library, handlers = release_handlers()
    picture = tmp_path / "head.png"
    Image.new("L", (80, 80), 90).save(picture)
    asked = {"question": "Which?", "options": ["CT", "MRI"], "modes": ["no-thinking"]}
    named = handlers.answer_api(str(picture), policy="Auto", modality="MRI", **asked)
    assert named["ok"] and named["policy"]["name"] == "Med-R1 MRI", named["error"]
    assert named["model"]["subfolder"] == "VQA_MRI" and "MRI" in named["policy"]["why"]
    unnamed = handlers.answer_api(str(picture), policy="Auto", **asked)  # a picture carries none
    assert unnamed["ok"] and unnamed["policy"]["name"] != "Med-R1 MRI"
    lower = handlers.answer_api(
        str(picture), policy="Auto", modality=" fundus photography", **asked
    )
    assert lower["ok"] and lower["policy"]["name"] == "Med-R1 Fundus photography"
    for wrong in ("Photo", 5, ["MRI"]):
        refused = handlers.answer_api(str(picture), policy="Auto", modality=wrong, **asked)
        assert not refused["ok"] and "Unknown modality" in refused["error"]
        assert "Dermoscopy" in refused["error"]  # the sentence lists the names to choose from
    library.close()


def test_no_server_path_appears_in_an_api_result_of_the_bundled_policies(ct_dicom):
    catalogue, library, handlers = release_handlers()  # offline, uncached: the bundled ones
    # the build's other stage beside the demo policy (SFT only, or after GRPO)
    others = [name for name in catalogue.names if name != catalogue.default.name]
    second = others[0] if others else None
    result = handlers.answer_api(str(ct_dicom), "Which?", ["CT", "MRI"], compare=second)
    assert result["ok"] and (second is None or result["compare"]["ok"]), result["error"]
    shown = json.dumps(result)
    folders = [entry.folder for entry in catalogue.entries]
    assert all(folder is not None and folder.is_absolute() for folder in folders)
    for path in (str(ROOT), *(str(folder) for folder in folders), str(Path.home())):
        assert path not in shown, path
    assert "assets/" not in shown and "demo-policy/" not in shown
    library.close()
