"""Where things go: everything a run writes lives under one outputs folder.

Paths are resolved from the project root, never from the working directory of
a job, so every job of a sweep (and the ranking CLI) finds the same store and
cache. ``SWEEP_OUTPUTS`` moves the whole folder (tests point it at tmp_path).
The outputs folder and every path checked against it are compared resolved (links
followed on both sides), so ``outputs/`` may be a link to a data disk.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote

from omegaconf import OmegaConf

from sweep.redact import redact, without_userinfo

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def outputs_root() -> Path:
    """The outputs folder: ``$SWEEP_OUTPUTS`` or ``<project>/outputs``."""
    configured = os.environ.get("SWEEP_OUTPUTS")
    return (Path(configured).expanduser() if configured else PROJECT_ROOT / "outputs").resolve()


def default_tracking_uri() -> str:
    return f"sqlite:///{outputs_root() / 'mlflow.db'}"


_SQLITE = re.compile(r"^(sqlite(?:\+[\w]+)?)://(.*)$", re.IGNORECASE)  # every SQLite dialect
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_SQLITE_FORMS = "sqlite:///relative/path.db or sqlite:////absolute/path.db"


def _bad_uri(uri: str, why: str):
    from sweep.settings import ConfigError

    return ConfigError(f"tracking.uri={redact(uri)!r}: {why}")


def _sqlite_parts(uri: str) -> tuple[str, str, str] | None:
    """(dialect, database path, ``?query``) of a SQLite URI; None for anything else."""
    match = _SQLITE.match(uri)
    if match is None:
        return None
    dialect, rest = match.groups()
    rest, _, query = rest.partition("?")
    if rest and not rest.startswith("/"):
        raise _bad_uri(uri, f"a SQLite URI names no host; write {_SQLITE_FORMS}")
    return dialect, rest[1:], f"?{query}" if query else ""


def _file_path(uri: str) -> str | None:
    """The folder of a ``file:`` URI (``file:/x``, ``file:///x``, ``file://localhost/x``)."""
    if not uri.lower().startswith("file:"):
        return None
    rest = uri[len("file:") :]
    if rest.startswith("//"):
        rest = rest[2:]
        if rest.lower().startswith("localhost/"):
            rest = rest[len("localhost") :]
    return unquote(rest)


def _is_server(uri: str) -> bool:
    return uri == "databricks" or (
        _SCHEME.match(uri) is not None and _sqlite_parts(uri) is None and _file_path(uri) is None
    )


def resolve_tracking_uri(uri: str | None) -> str:
    """An absolute MLflow URI: servers as given, local stores made absolute.

    Local means every SQLite dialect (``sqlite``, ``sqlite+pysqlite``, ...), every
    ``file:`` form and a plain path: all of them write on this machine.
    """
    if not uri:
        return default_tracking_uri()
    if (parts := _sqlite_parts(uri)) is not None:
        dialect, path, query = parts
        if path in ("", ":memory:"):
            return uri  # in memory: nothing written
        return f"{dialect}:///{Path(path).expanduser().resolve()}{query}"
    if (path := _file_path(uri)) is not None:
        return Path(path).expanduser().resolve().as_uri()
    if _is_server(uri):
        return uri  # http(s), databricks, postgresql+...: the server decides
    return Path(uri).expanduser().resolve().as_uri()


def register_resolvers() -> None:
    """``${sweep_outputs:}``, used by conf/config.yaml for Hydra's run and sweep folders."""
    OmegaConf.register_new_resolver("sweep_outputs", lambda: str(outputs_root()), replace=True)


def local_store_path(uri: str) -> Path | None:
    """The file (SQLite) or folder (file store) a local MLflow URI writes to; None for a server."""
    if (parts := _sqlite_parts(uri)) is not None:
        return None if parts[1] in ("", ":memory:") else Path(parts[1])
    if (path := _file_path(uri)) is not None:
        return Path(path)
    if _is_server(uri):
        return None
    return Path(uri)


def local_artifact_path(location: str) -> Path | None:
    """The folder an artifact location writes to on this machine (``file:`` or a plain
    path); None for a server or cloud location (``mlflow-artifacts:``, ``s3://``, ...)."""
    if (path := _file_path(location)) is not None:
        return Path(path)
    if not location or _SCHEME.match(location):
        return None
    return Path(location)


def check_store_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, with one line, when the tracking store cannot be reached.

    MLflow would retry for about two minutes and end in a SQLAlchemy or urllib3
    traceback. A local store's folder must exist (under the outputs folder it is
    created); an http(s) server must answer within ``timeout`` seconds.
    """
    store = local_store_path(uri)
    if store is not None:
        folder = store.parent
        root = outputs_root()
        if not folder.is_dir() and (folder == root or root in folder.parents):
            folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise _bad_uri(
                uri,
                f"the folder {folder} does not exist; create it, or leave tracking.uri unset "
                f"for the store under {root}",
            )
        if store.is_dir() and _sqlite_parts(uri) is not None:
            raise _bad_uri(uri, f"{store} is a folder; a SQLite store is a file")
        return
    if not uri.lower().startswith(("http://", "https://")):
        return
    try:  # credentials in the URI are MLflow's to send (urllib would take them for the host)
        with urllib.request.urlopen(without_userinfo(uri), timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return  # a server answered (401, 404, ...): it is there
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise _bad_uri(
            uri,
            f"no tracking server answers within {timeout:g} s ({reason}); start it "
            "(mlflow server --host 127.0.0.1 --port 5000 ...) or leave tracking.uri unset "
            "for the local store",
        ) from None


def check_inside_outputs(
    path: Path | str, setting: str, allowed: bool, opt_in: str = "allow_outside_outputs=true"
) -> None:
    """Refuse to write outside the outputs folder unless the user allowed it.

    A shared experiment YAML should not be able to make a sweep write into a
    user's home or system folders by accident; ``opt_in`` (the setting
    ``allow_outside_outputs=true``, or an environment variable for a folder an
    environment variable names) is the explicit "yes, I mean it". Both sides are
    compared resolved.
    """
    from sweep.settings import ConfigError

    resolved, root = Path(path).expanduser().resolve(), outputs_root()
    if allowed or resolved == root or root in resolved.parents:
        return
    raise ConfigError(
        f"{setting}={str(path)!r} writes outside the outputs folder {root}: "
        f"move it under that folder, set SWEEP_OUTPUTS, or add {opt_in}."
    )


def browse_hint(uri: str, experiment_id: str | None = None) -> str:
    """How to see a store in the MLflow UI (loopback only), opened on the runs table.

    MLflow 3 opens a new browser on its GenAI pages whatever the experiment's kind;
    ``workflowType=machine_learning`` in the page's address opens the runs instead.
    """
    page = f"#/experiments/{experiment_id}?workflowType=machine_learning" if experiment_id else ""
    uri = redact(uri)
    if uri.startswith(("http://", "https://")):
        return f"open {uri.rstrip('/')}/{page} in a browser"
    command = f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1"
    return f"{command}, then open http://127.0.0.1:5000/{page}" if page else command
