"""``needle_qc.__version__``: the installed distribution's version (pyproject.toml's)."""
from importlib import metadata

FALLBACK = "0.1.0"
"""Used when needle_qc runs from a source tree that is not installed (keep = pyproject)."""


def _installed_version():
    try:
        return metadata.version("needle_qc")
    except metadata.PackageNotFoundError:
        return FALLBACK


__version__ = _installed_version()
