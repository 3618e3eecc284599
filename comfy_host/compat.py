"""Which ComfyUI this is, and ComfyUI symbols looked up when a node runs.

ComfyUI symbols are looked up when they are used (`host_symbol`), so a host that lacks
one still loads the pack and the node that needs it fails with one message naming the
symbol, this host's version and the tested range. Importing this module logs a warning
once when the host's version is outside that range.
"""

from __future__ import annotations

import importlib
import logging

LOG = logging.getLogger("psi_sampler")

#: the ComfyUI versions the pack is tested against (oldest, newest)
TESTED_RANGE = ("0.3.64", "0.33.0")


class HostCompatibilityError(RuntimeError):
    """This ComfyUI lacks a symbol the pack needs (raised when a node runs, never at import)."""


def host_version() -> str:
    """ComfyUI's version string ("unknown" where the host does not say)."""
    try:
        return str(importlib.import_module("comfyui_version").__version__)
    except (ImportError, AttributeError):
        return "unknown"


def _version_key(version: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return None


def host_in_tested_range(version: str) -> bool | None:
    """Whether `version` lies in TESTED_RANGE (None when it cannot be parsed)."""
    key = _version_key(version)
    if key is None:
        return None
    return _version_key(TESTED_RANGE[0]) <= key <= _version_key(TESTED_RANGE[1])


def host_symbol(path: str):
    """The ComfyUI object at dotted `path` ("comfy.samplers.KSAMPLER"), or a
    HostCompatibilityError naming it, this host's version and the tested range."""
    module_name, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise missing_symbol(path) from err


def missing_symbol(path: str) -> HostCompatibilityError:
    return HostCompatibilityError(
        f"this ComfyUI ({host_version()}) has no {path}, which psi-sampler needs; psi-sampler is tested "
        f"with ComfyUI {TESTED_RANGE[0]} – {TESTED_RANGE[1]}: use a ComfyUI in that range or update psi-sampler")


_WARNED: set[str] = set()  # compatibility warnings given once per process


def warn_once(key: str, message: str) -> None:
    """Log `message` as a psi-sampler warning the first time `key` is seen in this process."""
    if key not in _WARNED:
        LOG.warning("psi-sampler: %s", message)
        _WARNED.add(key)


def _log_untested_host() -> None:
    version = host_version()
    if host_in_tested_range(version) is not True:
        LOG.warning("psi-sampler: ComfyUI %s is outside the tested range %s – %s; the nodes load, and a "
                    "missing ComfyUI feature is reported when a node needs it", version, *TESTED_RANGE)


_log_untested_host()
