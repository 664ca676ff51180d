"""Turn engine exceptions into one clear sentence in the UI: a gr.Error toast (`ui_errors`), or, for a
handler with a status line, that line, leaving every other output as it was (`in_place`)."""
from __future__ import annotations

import functools
import inspect
import logging

import gradio as gr

from engine import error_line

from . import texts

log = logging.getLogger("lethe.app")
USER_ERRORS = (ValueError, KeyError, RuntimeError, OSError, TypeError)


def _message(exc: BaseException) -> str:
    return error_line(exc).strip("'\"")


def _raise_ui(exc: BaseException):
    """A user's mistake is one log line; a bug keeps its traceback (logged once, here)."""
    if isinstance(exc, gr.Error):
        raise exc
    if isinstance(exc, USER_ERRORS):
        log.warning("request refused: %s", _message(exc))
    else:
        log.error("request failed: %s", _message(exc), exc_info=exc)
    raise gr.Error(_message(exc), print_exception=False) from exc


def ui_errors(fn):
    """Wrap an event handler (plain or generator) so every failure reaches the user as gr.Error."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                _raise_ui(exc)
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            _raise_ui(exc)
    return wrapper


def in_place(n_outputs: int):
    """Wrap a generator handler whose last of `n_outputs` outputs is a status line: a user's mistake
    keeps every other output as it was and says why in that line (no error badge on each output,
    no toast that fades); a bug still reaches the user as gr.Error."""
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except USER_ERRORS as exc:
                log.warning("request refused: %s", _message(exc))
                yield (*[gr.skip()] * (n_outputs - 1), status(_message(exc)))
            except Exception as exc:
                _raise_ui(exc)
        return wrapper
    return decorate


def status(message: str) -> str:
    """A status line's text (Markdown) for one refused request."""
    return texts.STATUS_ERROR.format(message=message)
