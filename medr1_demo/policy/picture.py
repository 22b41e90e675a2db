"""The picture a policy sees: the size it was trained at, decided here for the app and the trainer.

Med-R1 resized every training and evaluation image to 384 x 384 ("All input images should be
resized to 384x384", its README), and this project's trainer resizes to the recipe's
`image_size`. Serving a policy another size shifts what it sees (a 512 x 512 CT becomes ~324
visual tokens instead of ~196; a 3000 x 3000 radiograph thousands). So the app, `trainer eval`
and training all go through `as_trained`:

    size = training_size(metadata)      # from medr1_policy.json; None: not recorded
    picture = as_trained(scan.image, size)

A policy whose size is not recorded (and not given by the catalogue) is handed the picture as it
is and the processor's own min/max pixels decide, as its model card intends.
"""

from PIL import Image

MEDR1_RELEASE_SIZE = 384  # what the released Med-R1 checkpoints were trained on
MEDR1_RELEASE = "yuxianglai117/Med-R1"  # their Hugging Face repo (one sub-folder per split)


def training_size(metadata: dict, source: str | None = None) -> int | None:
    """The square side a checkpoint was trained at: its `medr1_policy.json`, else 384 for the
    Med-R1 release (`source` its repo id), else None."""
    candidates = (
        (metadata.get("model") or {}).get("image_size"),  # the demo build
        ((metadata.get("settings") or {}).get("script") or {}).get("image_size"),  # trainer runs
        metadata.get("image_size"),
    )
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    if source and str(source).strip().rstrip("/").lower() == MEDR1_RELEASE.lower():
        return MEDR1_RELEASE_SIZE
    return None


def as_trained(image: Image.Image, size: int | None) -> Image.Image:
    """`image` as RGB at size x size (bicubic, as training resized), or as it is when None."""
    image = image if image.mode == "RGB" else image.convert("RGB")
    if size and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return image
