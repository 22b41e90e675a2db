"""What an upload is, read from its first bytes: DICOM, a picture format, a ZIP or a NIfTI volume.

Uploads arrive as temporary files whose names mean nothing, so formats are told apart by content
only: the DICOM preamble (or a dataset starting with a group 0002/0008 tag), picture signatures,
the ZIP local-header signature, and the NIfTI header (sizeof_hdr 348 with magic 'n+1', or 540
with 'n+2'), also inside a gzip stream (`.nii.gz`), of which only the first bytes are inflated.

    from medr1_demo.scan.formats import sniff
    kind = sniff(open(path, "rb").read(HEAD_BYTES))   # "DICOM", "PNG", ..., "ZIP", "NIfTI" or None

Tests: `.venv/bin/python -m pytest tests/test_imaging.py tests/test_series.py -q`.
"""

from __future__ import annotations

import zlib
from struct import unpack

HEAD_BYTES = 2048  # what the sniffers look at
DICOM, ZIP, NIFTI, NIFTI_PAIR = "DICOM", "ZIP", "NIfTI", "NIfTI pair"

SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"II*\x00": "TIFF",
              b"MM\x00*": "TIFF", b"II+\x00": "TIFF", b"MM\x00+": "TIFF", b"BM": "BMP"}  # fmt: skip
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # a member's local header; an empty archive
GZIP_SIGNATURE = b"\x1f\x8b"
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN "
    b"UR US UT UV".split()
)


def sniff(head: bytes) -> str | None:
    """The upload's kind from its first bytes, or None when it is none of the known formats."""
    if head[128:132] == b"DICM":  # checked first: a DICOM preamble may itself hold a TIFF header
        return DICOM
    if head.startswith(ZIP_SIGNATURES):
        return ZIP
    nifti = nifti_kind(head)
    if nifti is None and head.startswith(GZIP_SIGNATURE):
        nifti = nifti_kind(gunzip_head(head))
    if nifti is not None:
        return nifti
    for signature, kind in SIGNATURES.items():
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if len(head) >= 8:  # a DICOM dataset without preamble starts with a group 0002 or 0008 tag
        for order in "<>":
            group, element = unpack(order + "HH", head[:4])
            explicit = head[4:6] in _VRS
            implicit = order == "<" and unpack("<I", head[4:8])[0] < 4096
            if group in (0x0002, 0x0008) and element < 0x0100 and (explicit or implicit):
                return DICOM
    return None


def nifti_kind(head: bytes) -> str | None:
    """NIFTI for a single-file NIfTI-1/-2 header, NIFTI_PAIR for a .hdr of a .hdr/.img pair."""
    if len(head) >= 348:
        sizes = {unpack("<i", head[:4])[0], unpack(">i", head[:4])[0]}
        if 348 in sizes and head[344:348] in (b"n+1\x00", b"ni1\x00"):
            return NIFTI if head[344:348] == b"n+1\x00" else NIFTI_PAIR
        if 540 in sizes and head[4:8] in (b"n+2\x00", b"ni2\x00"):
            return NIFTI if head[4:8] == b"n+2\x00" else NIFTI_PAIR
    return None


def gunzip_head(head: bytes, size: int = 544) -> bytes:
    """The first `size` inflated bytes of a gzip stream's beginning (b"" if it is not one)."""
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, size)
    except zlib.error:
        return b""
