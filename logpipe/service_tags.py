"""Who an event comes from: ``service``, ``hostname`` and ``ddtags``, from options or DD_* env."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DEFAULT_SERVICE = "gunicorn"


@dataclass(frozen=True)
class ServiceTags:
    """The attributes every event carries; ``tags`` are ``key:value`` strings."""

    service: str
    hostname: str
    tags: tuple[str, ...] = ()

    @property
    def ddtags(self) -> str:
        return ",".join(self.tags)

    @property
    def metric_tags(self) -> list[str]:
        """The tags metrics carry: ``service:NAME``, then ``tags``."""
        return [f"service:{self.service}", *self.tags]

    @classmethod
    def resolve(
        cls,
        *,
        service: str | None = None,
        env: str | None = None,
        tags: Sequence[str] = (),
        hostname: str | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> ServiceTags:
        """Options first, then ``DD_SERVICE``, ``DD_ENV``, ``DD_TAGS``, ``DD_HOSTNAME``."""
        env = env or environ.get("DD_ENV") or None
        merged: list[str] = []
        for tag in (
            *split_tags(environ.get("DD_TAGS", "")),
            *tags,
            *([f"env:{env}"] if env else []),
        ):
            if tag not in merged:
                merged.append(tag)
        return cls(
            service=service or environ.get("DD_SERVICE") or DEFAULT_SERVICE,
            hostname=hostname or environ.get("DD_HOSTNAME") or os.uname().nodename,
            tags=tuple(merged),
        )

    @property
    def attributes(self) -> dict[str, str]:
        """``service``, ``hostname`` and ``ddtags``, as every event carries them."""
        return {"service": self.service, "hostname": self.hostname, "ddtags": self.ddtags}


def split_tags(text: str) -> list[str]:
    """``"team:web, tier:1"`` (commas or spaces, as in DD_TAGS) to a list of tags."""
    return [tag for tag in text.replace(",", " ").split() if tag]
