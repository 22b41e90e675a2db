"""Uploads become the picture the model sees, plus metadata that is safe to show.

reader.py     the entry points: `open_scan` (read once), `load_scan` (one picture) and
              `open_upload` (several files or a ZIP: one scan, or a `SeriesChoice`)
types.py      `Scan`, `ScanError`, `OpenedScan` and the checks every reader shares
formats.py    what an upload is, from its first bytes
windowing.py  grey levels into 0..255: CT presets, full range, percentile window
dicom.py      DICOM files through pydicom's display pipeline, allow-listed metadata
pictures.py   PNG, JPEG, TIFF, BMP and WebP pictures
budget.py     what decoding may cost: big pictures shrunk early, one heavy decode at a time
archive.py    the files of an upload: a ZIP read safely in memory, or several files
series.py     DICOM files grouped into series, described by safe facts, one chosen
stack.py      a chosen series decoded: a `Volume`, or slice by slice when inconsistent
volume.py     a decoded volume: any slice of the axial, coronal or sagittal plane
nifti.py      NIfTI volumes (.nii, .nii.gz) through nibabel
cache.py      opened uploads kept by file for the page (bounded, dropped with the file)
"""
