"""logpipe: tail, parse and ship gunicorn access and error logs.

Library use::

    import logpipe

    access = logpipe.AccessParser()            # or AccessParser(fmt='%(h)s ... %(D)s')
    event = access.parse(line)                 # dict with Datadog's standard attributes
    errors = logpipe.ErrorParser()
    multiline = logpipe.Multiline()
    for record in multiline.feed(line):
        event = errors.parse(record.text)

    follower = logpipe.Follower(                    # follow files through rotation
        [logpipe.FollowSpec("/var/log/gunicorn/access.log", "access")],
        logpipe.CheckpointStore(Path("/var/lib/myshipper")),
    )
    for item in follower.poll():                    # complete lines / error records
        ship(access.parse(item.data))
        follower.ack(item.key, item.end)            # delivered: the checkpoint may move on
    follower.checkpoint()
"""

from typing import Any

from logpipe.multiline import Multiline, Record
from logpipe.parsing.access import AccessParser
from logpipe.parsing.access_format import DEFAULT_FORMAT, FormatError
from logpipe.parsing.error import ErrorParser
from logpipe.sources.checkpoints import CheckpointStore
from logpipe.sources.follow import Follower, FollowSpec, Item

__all__ = [
    "DEFAULT_FORMAT",
    "AccessParser",
    "CheckpointStore",
    "ErrorParser",
    "FollowSpec",
    "Follower",
    "FormatError",
    "Item",
    "Multiline",
    "Record",
    "replay",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``logpipe.replay`` is imported when first used: its worker machinery (multiprocessing,
    the metrics client) is not start-up cost for the other commands."""
    if name == "replay":
        from logpipe.replay import replay_events

        return replay_events
    raise AttributeError(f"module 'logpipe' has no attribute {name!r}")
