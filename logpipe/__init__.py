"""logpipe: tail, parse and ship gunicorn access and error logs.

Library use::

    import logpipe

    access = logpipe.AccessParser()            # or AccessParser(fmt='%(h)s ... %(D)s')
    event = access.parse(line)                 # dict with Datadog's standard attributes
    errors = logpipe.ErrorParser()
    multiline = logpipe.Multiline()
    for record in multiline.feed(line):
        event = errors.parse(record.text)
"""

from logpipe.multiline import Multiline, Record
from logpipe.parsing.access import AccessParser
from logpipe.parsing.access_format import DEFAULT_FORMAT, FormatError
from logpipe.parsing.error import ErrorParser

__all__ = ["DEFAULT_FORMAT", "AccessParser", "ErrorParser", "FormatError", "Multiline", "Record"]
__version__ = "0.1.0"
