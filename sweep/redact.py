"""Credentials in URIs never reach the store, an artifact or a log line: they become ``***``.

A tracking server behind basic auth is reached with ``tracking.uri=http://user:secret@host``
(a database store with ``postgresql://user:secret@db/mlflow``, a signed URL with
``?token=...``). The URI is part of the composed config, so without this one helper
the password would be a param (``tracking.uri``), part of the tag that tells runs of a
sequence apart (``sequence.settings``), of the parent run's ``sweep.overrides``, of the
``config.yaml`` artifact and of the log. :func:`redact` is applied wherever text that
may hold a URI is recorded or shown; the URI itself is used unchanged to connect.
Log lines of other libraries (Hydra's launcher prints every job's overrides) are
redacted too, once :func:`redact_logs` has run in the process.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*\\?://)(?P<userinfo>[^/?#\s]+)@")
"""``scheme://userinfo@``; Hydra writes an override's colons escaped (``http\\://u\\:p@h``)."""
_SECRET_QUERY = re.compile(
    r"(?P<name>[?&;][^=&#\s]*(?:pass|pwd|secret|token|key|auth|credential|signature|sig)"
    r"[^=&#\s]*=)(?P<value>[^&#\s]+)",
    re.IGNORECASE,
)


def _userinfo(match: re.Match) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    # user:password keeps the user; a lone name may itself be a token
    return f"{match['scheme']}{user}:{MASK}@" if colon else f"{match['scheme']}{MASK}@"


def redact(text: str) -> str:
    """``text`` with the password (or token) of every URI in it replaced by ``***``."""
    if "@" not in text and "=" not in text:
        return text
    return _SECRET_QUERY.sub(rf"\g<name>{MASK}", _USERINFO.sub(_userinfo, text))


def redact_tree(value: Any) -> Any:
    """A config tree (dicts, lists, scalars) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: redact_tree(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_tree(item) for item in value]
    return value


def without_userinfo(uri: str) -> str:
    """``uri`` without ``user:password@`` (for a probe that must not send or show them)."""
    return _USERINFO.sub(lambda m: m["scheme"], uri, count=1)


def redact_logs() -> None:
    """Redact every log record this process makes from now on, whoever logs it and
    wherever it goes. A record factory, not a handler's filter: Hydra's launcher sets up
    logging again (new handlers) just before it logs each job's overrides."""
    make = logging.getLogRecordFactory()
    if getattr(make, "redacts", False):
        return

    def redacting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format: logging reports it itself, later
            return record
        shown = redact(message)
        if shown != message:
            record.msg, record.args = shown, None
        return record

    redacting.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting)
