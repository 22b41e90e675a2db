"""The Gradio page and its API. Never imports torch: the policy arrives as plain callables.

layout.py    the Blocks layout, events and API endpoints; launch options and theme
handlers.py  the events' handlers: check a request once, stream answers into HTML or JSON
inputs.py    every page and API input checked in the handler, with a plain sentence when wrong
scans.py     the scan panel: an upload read once, shown at any series, slice, plane and window
batch.py     the Batch tab and /batch: a case list and a ZIP in, results and downloads out
render.py    answers, scans and the model as escaped HTML and API dicts
aids.py      the trust aids drawn: option-probability bars and the checks' verdicts
uploads.py   a private upload folder per process: anonymous, unfetchable, removed
logs.py      what the server log may hold: kinds, sizes, timings, reasons; never client text
page.css     the page's styling
"""
