"""Where a policy comes from, and how it is loaded: folders, hub repos, processors, LoRA, 4/8-bit.

Every source is first turned into a local folder (`resolve_source`): a hub repo id such as
`yuxianglai117/Med-R1` with sub-folder `VQA_CT` is fetched once with `huggingface_hub` and then
read like any checkpoint on disk. Local paths are never sent to the hub.

Processors: the stock `AutoProcessor` is used where torchvision works (GPU hosts, Spaces). Without
torchvision, transformers cannot build Qwen2-VL's video processor and so not the stock processor;
`load_processor` then builds the model's own processor class with the PIL image processor, the
tokenizer and the chat template, and no video processor ("image-only"). Both kinds are real
`ProcessorMixin`s (TRL's `GRPOTrainer(processing_class=...)` accepts them), pad on the left for
generation, and say which kind they are through `processor_kind(processor)`.

    >>> folder = resolve_source("/path/to/Med-R1", "VQA_CT")  # doctest: +SKIP
    >>> processor, model = load_processor(folder), load_model(folder)  # doctest: +SKIP
"""

import json
import logging
import re
from pathlib import Path

from medr1_demo.config import QUANTIZATIONS

logger = logging.getLogger(__name__)

METADATA_FILE = "medr1_policy.json"
ADAPTER_CONFIG = "adapter_config.json"
STOCK, IMAGE_ONLY = "stock", "image-only"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_KIND_ATTRIBUTE = "medr1_processor_kind"


class PolicyLoadError(RuntimeError):
    """A policy cannot be loaded; str(err) says why in plain words."""


def _model_folders(root: Path) -> list[str]:
    return sorted(
        child.name
        for child in root.iterdir()
        if child.is_dir()
        and ((child / "config.json").exists() or (child / ADAPTER_CONFIG).exists())
    )


def _check_folder(folder: Path, shown: str) -> Path:
    if not folder.is_dir():
        raise PolicyLoadError(f"No model at {shown}: the folder does not exist.")
    if not (folder / "config.json").exists() and not (folder / ADAPTER_CONFIG).exists():
        found = _model_folders(folder)
        hint = f" Sub-folders found: {', '.join(found)}." if found else ""
        raise PolicyLoadError(f"No model at {shown}: the folder has no config.json.{hint}")
    return folder


def resolve_source(model: str, subfolder: str | None = None) -> Path:
    """A local checkpoint folder for `model` (a folder or a hub repo id) and its `subfolder`."""
    if not model or not str(model).strip():
        raise PolicyLoadError("No model given: name a checkpoint folder or a Hugging Face repo id.")
    model = str(model).strip()
    local = Path(model).expanduser()
    # "owner/name" is a hub id unless it exists here, or its first part is a local folder
    # ("assets/missing-policy" is a missing local path, not a repo to fetch).
    looks_local = local.exists() or local.parent.is_dir() and local.parent != Path(".")
    if looks_local or not _REPO_ID.match(model):
        root, shown = local, str(local)
    else:
        root, shown = _download(model, subfolder), model
    if subfolder:
        if root.is_dir() and not (root / subfolder).is_dir():
            found = _model_folders(root)
            listed = ", ".join(found) if found else "none"
            raise PolicyLoadError(
                f"No sub-folder {subfolder!r} in {shown}. Sub-folders with a model: {listed}."
            )
        return _check_folder(root / subfolder, f"{shown}/{subfolder}")
    return _check_folder(root, shown)


def _download(repo_id: str, subfolder: str | None) -> Path:
    """Fetch a hub repo (only `subfolder` when given) into the local cache; the cache path."""
    try:
        from huggingface_hub import snapshot_download

        patterns = [f"{subfolder}/*"] if subfolder else None
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as error:  # network, auth, missing repo: all become one plain message
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PolicyLoadError(
            f"Could not fetch {repo_id!r} from the Hugging Face Hub ({reason}). "
            "Check the repo id and the network, or give a local folder."
        ) from error


def read_policy_metadata(path) -> dict:
    """The checkpoint's `medr1_policy.json` (mode, base model, description, ...), else {}."""
    file = Path(path) / METADATA_FILE
    if not file.exists():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        logger.warning("Ignoring unreadable %s: %s", file, error)
        return {}
    return data if isinstance(data, dict) else {}


def adapter_base(adapter) -> str | None:
    """The base model a PEFT adapter folder names in its adapter_config.json."""
    file = Path(adapter) / ADAPTER_CONFIG
    if not file.exists():
        return None
    try:
        return json.loads(file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------------- processors


def processor_kind(processor) -> str:
    """ "stock" or "image-only" for a processor returned by `load_processor`."""
    return getattr(processor, _KIND_ATTRIBUTE, STOCK)


def _torchvision_works() -> bool:
    from transformers.utils import is_torchvision_available

    if not is_torchvision_available():
        return False
    try:  # a CPU wheel can install yet fail at import (its C++ ops missing)
        import torchvision  # noqa: F401
    except Exception:
        return False
    return True


def _read_chat_template(folder: Path, tokenizer) -> str | None:
    """chat_template.jinja (current), chat_template.json (legacy), else the tokenizer's."""
    jinja = folder / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text(encoding="utf-8")
    legacy = folder / "chat_template.json"
    if legacy.exists():
        template = json.loads(legacy.read_text(encoding="utf-8")).get("chat_template")
        if template:
            return template
    return getattr(tokenizer, "chat_template", None)


def _processor_class_name(folder: Path) -> str | None:
    """The processor class a checkpoint names, else the one its model type maps to."""
    from transformers.models.auto.auto_mappings import PROCESSOR_MAPPING_NAMES

    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        try:
            named = json.loads((folder / name).read_text(encoding="utf-8")).get("processor_class")
        except (OSError, ValueError):
            continue
        if named:
            return named
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8"))["model_type"]
    except (OSError, ValueError, KeyError):
        return None
    return _mapped_name(PROCESSOR_MAPPING_NAMES, model_type)


def _mapped_name(mapping, model_type: str) -> str | None:
    name = mapping.get(model_type)
    if isinstance(name, dict):  # per-backend names ({"torchvision": ..., "pil": ...})
        name = name.get("torchvision") or next(iter(name.values()), None)
    return name


def image_only_processor_class(base: type) -> type:
    """A subclass of processor class `base` with its video processor removed.

    It keeps `base`'s name so what it saves (processor_config.json, tokenizer_config.json) loads
    as the stock processor where torchvision exists; it also writes a video-processor entry for
    that, mirroring the image processor's settings.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # `base.__init__` passes (image, tokenizer, video) on; ProcessorMixin pairs them with this
        # class's two attributes, so the missing video processor is dropped, not type-checked.
        base.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)
        setattr(self, _KIND_ATTRIBUTE, IMAGE_ONLY)

    def to_dict(self):
        import transformers

        output = base.to_dict(self)
        image = output.get("image_processor") or {}
        # Qwen2VLImageProcessor -> Qwen2VLVideoProcessor: the family's naming. The auto mappings
        # cannot tell here: they blank every video class when torchvision is missing.
        video_type = str(image.get("image_processor_type", "")).replace("Image", "Video", 1)
        if video_type.endswith("VideoProcessor") and hasattr(transformers, video_type):
            video = {k: v for k, v in image.items() if k != "image_processor_type"}
            output["video_processor"] = dict(video, video_processor_type=video_type)
        return output

    return type(
        base.__name__,
        (base,),
        {"__init__": __init__, "to_dict": to_dict, "__module__": base.__module__},
    )


def _image_only(folder: Path):
    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer
    from transformers.processing_utils import ProcessorMixin

    class_name = _processor_class_name(folder)
    base = getattr(transformers, class_name, None) if class_name else None
    if not isinstance(base, type) or not issubclass(base, ProcessorMixin):
        raise PolicyLoadError(f"No known processor for the checkpoint at {folder} ({class_name}).")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    image_processor = AutoImageProcessor.from_pretrained(folder)  # the PIL one without torchvision
    processor = image_only_processor_class(base)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=_read_chat_template(folder, tokenizer),
    )
    return processor


def load_processor(path):
    """The processor for the checkpoint at `path` (stock, else image-only), padding on the left."""
    folder = Path(path)
    processor = None
    if _torchvision_works():
        from transformers import AutoProcessor

        try:
            processor = AutoProcessor.from_pretrained(folder)
            setattr(processor, _KIND_ATTRIBUTE, STOCK)
        except ImportError as error:  # a video processor that still cannot be built
            logger.warning("Stock processor unavailable (%s); using an image-only one.", error)
        except (OSError, ValueError) as error:
            raise PolicyLoadError(f"Could not load the processor from {folder}: {error}") from error
    if processor is None:
        try:
            processor = _image_only(folder)
        except PolicyLoadError:
            raise
        except (OSError, ValueError, TypeError) as error:
            raise PolicyLoadError(f"Could not load the processor from {folder}: {error}") from error
    if processor.chat_template is None:
        raise PolicyLoadError(f"The checkpoint at {folder} has no chat template.")
    processor.tokenizer.padding_side = "left"  # generation appends on the right
    return processor


# ---------------------------------------------------------------------------------------- models


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PolicyLoadError(f"Device {device!r} was asked for, but this machine has no CUDA GPU.")
    return device


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 natively (x86 AVX-512-BF16 or AMX, ARM BF16)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:  # not Linux: no claim
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def stored_dtype(folder) -> str | None:
    """The dtype a checkpoint's weights are stored in, as its config.json names it."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return None
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    value = config.get("dtype") or config.get("torch_dtype") or text.get("dtype")
    return str(value) if value else None


def pick_dtype(dtype, device: str, stored: str | None = None):
    """The torch dtype for `dtype` on `device`; "auto": bfloat16 on GPUs that have it (else
    float16), and on CPUs with native bfloat16 for weights stored in bfloat16 (upcasting them
    would double the bytes read per token for no gain), else float32."""
    import torch

    if dtype in (None, "auto"):
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if stored == "bfloat16" and cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    named = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32"}
    resolved = getattr(torch, named.get(str(dtype), str(dtype)), None)
    if not isinstance(resolved, torch.dtype):
        raise PolicyLoadError(f"Unknown dtype {dtype!r}; use auto, bfloat16, float16 or float32.")
    return resolved


def pick_attention(attn_implementation: str, device: str, dtype) -> str:
    import importlib.util

    import torch

    if attn_implementation != "auto":
        return attn_implementation
    half = dtype in (torch.bfloat16, torch.float16)
    if device.startswith("cuda") and half and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def _quantization_config(quantization: str, device: str, dtype):
    if quantization not in QUANTIZATIONS:
        raise PolicyLoadError(f"Unknown quantization {quantization!r}; use 4bit or 8bit.")
    if not device.startswith("cuda"):
        raise PolicyLoadError(
            f"{quantization} loading needs a CUDA GPU (bitsandbytes); this runs on {device}. "
            "Load the model unquantized instead."
        )
    from transformers import BitsAndBytesConfig

    # The vision tower stays in full precision: it is small and quantizing it hurts image reading.
    skip = ["visual", "lm_head"]
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
        llm_int8_skip_modules=skip,
    )


def load_model(
    path=None,
    *,
    device: str = "auto",
    dtype="auto",
    quantization: str | None = None,
    attn_implementation: str = "auto",
    adapter=None,
):
    """The policy at `path` in eval mode, with a LoRA `adapter` (a folder) applied when given.

    `path` may be None when `adapter` is given: the base model named in the adapter's
    adapter_config.json is resolved instead. Adapters are merged into the weights (generation
    then costs what the base model costs), except on a quantized model, where merging would
    round the LoRA update into 4/8-bit weights; there the adapter stays separate.
    """
    from transformers import AutoModelForImageTextToText

    if path is None:
        base = adapter_base(adapter) if adapter else None
        if base is None:
            raise PolicyLoadError("No model given, and no adapter naming its base model.")
        path = resolve_source(base)
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device, stored_dtype(path))
    kwargs = {
        "dtype": torch_dtype,
        "use_safetensors": True,
        "trust_remote_code": False,
        "attn_implementation": pick_attention(attn_implementation, device, torch_dtype),
    }
    if quantization:
        kwargs["quantization_config"] = _quantization_config(quantization, device, torch_dtype)
    # Weights load straight onto the device (a 2B model need not pass through CPU memory).
    kwargs["device_map"] = {"": device if ":" in device or device == "cpu" else f"{device}:0"}
    try:
        model = AutoModelForImageTextToText.from_pretrained(Path(path), **kwargs)
    except (OSError, ValueError, ImportError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PolicyLoadError(f"Could not load the model from {path}: {first}") from error
    if adapter:
        model = _apply_adapter(model, Path(adapter), merge=not quantization)
    return model.eval()


def _apply_adapter(model, adapter: Path, *, merge: bool):
    if not (adapter / ADAPTER_CONFIG).exists():
        raise PolicyLoadError(f"No LoRA adapter at {adapter}: the folder has no {ADAPTER_CONFIG}.")
    try:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter, is_trainable=False)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PolicyLoadError(
            f"The adapter at {adapter} does not fit this model: {first}"
        ) from error
    return model.merge_and_unload() if merge else model
