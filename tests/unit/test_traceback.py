"""Traceback split: message, stack and the kind of the last exception."""

from __future__ import annotations

from logpipe.parsing.error.traceback import split_traceback

CHAINED = """Error handling request /pay
Traceback (most recent call last):
  File "/app/views.py", line 3, in pay
    charge()
KeyError: 'card'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/app/views.py", line 5, in pay
    raise PaymentDeclined("no card")
app.errors.PaymentDeclined: no card"""


def test_the_kind_is_the_exception_after_the_last_frame() -> None:
    error = split_traceback(CHAINED)
    assert error is not None
    assert error["message"] == "Error handling request /pay"
    assert error["stack"].startswith('File "/app/views.py", line 3')
    assert error["kind"] == "app.errors.PaymentDeclined"


def test_no_kind_without_an_exception_line_and_nothing_without_the_marker() -> None:
    error = split_traceback('Traceback (most recent call last):\n  File "a.py", line 1\n    x')
    assert error is not None
    assert "kind" not in error
    assert split_traceback("worker timeout (pid:12)") is None
