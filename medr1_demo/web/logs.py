"""What the server log may hold: kinds, sizes, timings and reason codes; never client text.

The handlers log one line per request (answered, or refused with a short reason code). Gradio
itself prints a full traceback for a request it cannot even hand to a handler (a malformed raw
HTTP call, a wrong number of inputs); those tracebacks can quote what was sent and fill the log
(a 2 KB traceback per bad request), so `quiet_gradio_tracebacks` makes them one line naming the
error's type.

    quiet_gradio_tracebacks()     # once, before the server starts
"""

import logging
import sys
import traceback
import types

logger = logging.getLogger("medr1_demo.web")


def _one_line() -> None:
    kind = sys.exc_info()[0]
    logger.info("request refused by Gradio: %s", kind.__name__ if kind else "error")


def quiet_gradio_tracebacks() -> None:
    """Replace the tracebacks Gradio's queue prints for failed events with one line each."""
    from gradio import queueing

    if getattr(queueing.traceback, "medr1_quiet", False):
        return
    queueing.traceback = types.SimpleNamespace(
        print_exc=_one_line, format_exc=traceback.format_exc, medr1_quiet=True
    )
