"""One encoding per distinct picture in a batch: rows that show the same scan share its encoding.

A question's rows mostly show one picture: both modes, and the option-order control, are the same
scan with different text (only the image control's grey picture differs). The image processor and
the vision tower would otherwise prepare and encode that scan once per row. Here each distinct
picture is prepared and encoded once and its result repeated for the rows that show it, so asking
both modes costs one vision pass, not two, and a Batch-tab group of 8 cases costs 8, not 16.

- `SharedImageProcessor` wraps the processor's image processor: pictures passed as the same object
  (as `asking.plan` passes them) are processed once; `pixel_values` and `image_grid_thw` are
  then repeated per row, so the processor expands every row's image tokens as before.
- `share_vision(model)` hooks the vision tower: pictures whose patches are equal are encoded
  once, and the features repeated in the output.

What comes out is what would have come out without sharing: the same pixel values exactly, and
the same features up to the floating-point differences of a smaller matrix product (greedy answers
equal; tests/test_shared_pictures.py). Anything unexpected (other output fields, extra
arguments) falls back to encoding every row, as before.

    engine.processor.image_processor = SharedImageProcessor(engine.processor.image_processor)
    share_vision(engine.model)
"""

import threading

import torch

_PER_PICTURE = ("image_grid_thw",)  # one row per picture
_PER_PATCH = ("pixel_values",)  # one row per patch, pictures one after the other


def _repeat(pieces: list[torch.Tensor], order: list[int]) -> torch.Tensor:
    return torch.cat([pieces[k] for k in order])


class SharedImageProcessor:
    """An image processor that processes each distinct picture object of a call once."""

    def __init__(self, inner):
        self.__dict__["inner"] = inner  # plain attribute: __getattr__ below forwards the rest

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __setattr__(self, name, value):
        setattr(self.inner, name, value)

    def __call__(self, images, *args, **kwargs):
        if not isinstance(images, list | tuple) or not all(hasattr(i, "size") for i in images):
            return self.inner(images, *args, **kwargs)  # nested or unusual input: as before
        first: dict[int, int] = {}  # id(picture) -> its index among the distinct ones
        order = [first.setdefault(id(image), len(first)) for image in images]
        if len(first) == len(images):
            return self.inner(images, *args, **kwargs)
        distinct = list({id(image): image for image in images}.values())
        output = self.inner(distinct, *args, **kwargs)
        if set(output.keys()) != set(_PER_PICTURE + _PER_PATCH):
            return self.inner(images, *args, **kwargs)  # fields this does not know how to repeat
        grid = output["image_grid_thw"]
        patches = torch.split(output["pixel_values"], grid.prod(-1).tolist())
        output["pixel_values"] = _repeat(list(patches), order)
        output["image_grid_thw"] = grid[order]
        return output


def _split(hidden: torch.Tensor, grid: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.split(hidden, grid.prod(-1).tolist()))


def share_vision(model) -> bool:
    """Hook the vision tower of `model` (Qwen2-VL style: `model.model.visual`) so pictures with
    equal patches are encoded once. Returns whether it could be hooked."""
    visual = getattr(getattr(model, "model", None), "visual", None)
    merge = getattr(visual, "spatial_merge_size", None)
    if visual is None or merge is None or getattr(visual, "_shares_pictures", False):
        return False
    calls = threading.local()  # the order of the call in flight, per thread

    def before(module, args, kwargs):
        calls.order = None
        grid = kwargs.get("grid_thw")
        if len(args) != 1 or grid is None or set(kwargs) != {"grid_thw"} or len(grid) < 2:
            return None
        pieces = _split(args[0], grid)
        order, kept = [], []
        seen: dict[tuple, list[int]] = {}  # a cheap fingerprint -> kept pictures that have it
        for k, piece in enumerate(pieces):
            candidates = seen.setdefault((tuple(piece.shape), float(piece.sum())), [])
            same = next((j for j in candidates if torch.equal(pieces[kept[j]], piece)), None)
            if same is None:
                same = len(kept)
                kept.append(k)
                candidates.append(same)
            order.append(same)
        if len(kept) == len(pieces):
            return None
        calls.order = (order, grid[kept])
        return (torch.cat([pieces[k] for k in kept]),), {"grid_thw": grid[kept]}

    def after(module, args, kwargs, output):
        state, calls.order = getattr(calls, "order", None), None
        if state is None:
            return None
        order, grid = state
        merged = grid.clone()
        merged[:, 1:] //= merge  # features: one per merge x merge patches
        output.pooler_output = _repeat(_split(output.pooler_output, merged), order)
        if getattr(output, "last_hidden_state", None) is not None:
            output.last_hidden_state = _repeat(_split(output.last_hidden_state, grid), order)
        return output

    visual.register_forward_pre_hook(before, with_kwargs=True)
    visual.register_forward_hook(after, with_kwargs=True)
    visual._shares_pictures = True
    return True
