"""Med-R1 clinician demo: the package the app (`app.py`) is made of.

    protocol.py   Med-R1's prompts, question strings and answer parsing (one place for all)
    config.py     the app's settings: dataclasses -> YAML keys, MEDR1_* variables, flags
    results.py    what the engine returns (answers per mode, the loaded policy's description)
    overlay.py    relevance maps drawn over a picture (the page and trainer eval --maps)
    scan/         uploads -> the picture the model sees + safe metadata (DICOM, pictures)
    policy/       checkpoints, the engine (both modes, streaming), batching, the tiny builder
    batch/        many questions at once: case lists, scoring, tables (Batch tab, trainer eval)
    web/          the Gradio page: layout, handlers, rendering, css (never imports torch)

Package files stay empty: importing the page or the scan reader never pulls in torch.
"""
