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
    for batch in follower.poll():                   # what each file added: lines or records
        for item in batch.items():
            ship(access.parse(item.data))
            follower.ack(item.key, item.end)        # delivered: the checkpoint may move on
    follower.checkpoint()

Follow mode's own route from a poll's batches to events, the fast one, is
``logpipe.pipeline.batch``; ``docs/ARCHITECTURE.md`` describes every stage.
"""

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from logpipe.about import VERSION
from logpipe.checkpoints import CheckpointStore
from logpipe.parsing.access.format import DEFAULT_FORMAT, FormatError
from logpipe.parsing.access.parser import AccessParser
from logpipe.parsing.error.parser import ErrorParser
from logpipe.sources.follower import Batch, Follower, FollowSpec, Item
from logpipe.sources.multiline import Multiline, Record

__all__ = [
    "DEFAULT_FORMAT",
    "AccessParser",
    "Batch",
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
__version__ = VERSION


def replay(
    access: Iterable[str | Path] = (), error: Iterable[str | Path] = (), *, fmt: str | None = None
) -> Iterator[dict[str, Any]]:
    """The events of archived logs, each rotated series oldest first (no ledger: the caller
    delivers them); ``fmt`` is gunicorn's ``access_log_format``. ``logpipe.backfill.run`` is
    imported on first use: its worker machinery (multiprocessing, the metrics client) is no
    start-up cost for the other commands."""
    from logpipe.backfill.run import replay_events

    return replay_events(access, error, fmt=fmt)
