"""Uploads become the picture the model sees, plus metadata that is safe to show.

reader.py     the entry points: `open_scan` (read once) and `load_scan` (one picture)
types.py      `Scan`, `ScanError`, `OpenedScan` and the checks every reader shares
windowing.py  grey levels into 0..255: CT presets, full range, percentile window
dicom.py      DICOM files through pydicom's display pipeline, allow-listed metadata
pictures.py   PNG, JPEG, TIFF, BMP and WebP pictures
cache.py      opened uploads kept by file for the page (bounded, dropped with the file)
"""
