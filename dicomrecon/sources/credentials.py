"""Credentials for DICOMweb: from the environment or ``~/.netrc``, never from an argument.

``DICOMRECON_DICOMWEB_TOKEN`` (a bearer token) wins over ``DICOMRECON_DICOMWEB_USER`` /
``DICOMRECON_DICOMWEB_PASSWORD`` (basic auth), which win over a ``~/.netrc`` entry for the host
(``$NETRC`` names another file).  The values live only in the HTTP session; :func:`describe`
says which kind is in use without showing any of it.
"""

from __future__ import annotations

import netrc
import os
from dataclasses import dataclass, field
from typing import Optional

from ..errors import PacsError

ENV_USER = "DICOMRECON_DICOMWEB_USER"
ENV_PASSWORD = "DICOMRECON_DICOMWEB_PASSWORD"
ENV_TOKEN = "DICOMRECON_DICOMWEB_TOKEN"


@dataclass(frozen=True)
class Credentials:
    kind: str                                       # "none", "basic", "bearer"
    origin: str = ""                                # where they came from (names, not values)
    user: Optional[str] = field(default=None, repr=False)
    secret: Optional[str] = field(default=None, repr=False)

    def describe(self) -> str:
        return "no credentials" if self.kind == "none" else f"{self.kind} auth from {self.origin}"

    def secrets(self) -> list:
        """The values that must never be shown (for redaction and for tests)."""
        return [s for s in (self.secret,) if s]


def _netrc(host: str) -> Optional[tuple]:
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    if not os.path.isfile(path):
        return None
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (netrc.NetrcParseError, OSError) as exc:
        # The parse error quotes the offending line, which may hold a password: name the
        # file and line only.
        line = getattr(exc, "lineno", "?")
        raise PacsError(f"{path}: cannot be read (line {line})",
                        hint="fix or remove the netrc file") from None
    if not entry:
        return None
    login, _account, password = entry
    return (login or "", password or "")


def load(host: str) -> Credentials:
    """The credentials for ``host``: environment first, then netrc, else none."""
    token = os.environ.get(ENV_TOKEN)
    if token:
        return Credentials("bearer", ENV_TOKEN, secret=token)
    user, password = os.environ.get(ENV_USER), os.environ.get(ENV_PASSWORD)
    if user or password:
        if not (user and password):
            missing = ENV_PASSWORD if user else ENV_USER
            raise PacsError(f"{missing} is not set (both {ENV_USER} and {ENV_PASSWORD} are "
                            "needed for basic auth)")
        return Credentials("basic", f"{ENV_USER}/{ENV_PASSWORD}", user=user, secret=password)
    entry = _netrc(host)
    if entry:
        return Credentials("basic", "netrc", user=entry[0], secret=entry[1])
    return Credentials("none")
