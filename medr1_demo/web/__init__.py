"""The Gradio page and its API. Never imports torch: the policy arrives as plain callables.

layout.py    the Blocks layout, events and API endpoints; launch options and theme
handlers.py  the events' handlers: check a request once, stream answers into HTML or JSON
render.py    answers, scans and the model as escaped HTML and API dicts
page.css     the page's styling
"""
