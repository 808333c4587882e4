"""The bundled Needle steps aside when the user has a Needle of their own on ``sys.path``.

Installing needle_qc puts this reference Needle where ``import needle`` finds it first (the
editable install's redirecting finder runs ahead of ``sys.path``; a wheel's top-level
``needle`` sits in site-packages, before a notebook's ``sys.path.append("./python")``). So the
first thing ``needle/__init__.py`` does is look for another ``needle`` package on ``sys.path``;
if there is one, that package is loaded as ``needle`` instead, and a finder placed first on
``sys.meta_path`` resolves ``needle.*`` submodules inside it (never in this tree).
``NEEDLE_QC_BUNDLED_NEEDLE=1`` keeps the bundled one regardless.
"""
import importlib.machinery
import importlib.util
import os
import sys

OWN_DIR = os.path.dirname(os.path.abspath(__file__))
FORCE_BUNDLED_ENV = "NEEDLE_QC_BUNDLED_NEEDLE"


def _same_dir(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _is_bundled_copy(candidate):
    # another copy of this package (the source tree next to an installed wheel, say) is not
    # a user's Needle: it carries this very module
    return os.path.isfile(os.path.join(candidate, os.path.basename(__file__)))


def user_needle_dir(search_path=None):
    """The first ``needle`` package directory on ``search_path`` (default ``sys.path``) other
    than this bundled one, or None (also None when ``NEEDLE_QC_BUNDLED_NEEDLE=1``)."""
    if os.environ.get(FORCE_BUNDLED_ENV) == "1":
        return None
    for entry in sys.path if search_path is None else search_path:
        if not isinstance(entry, str):
            continue
        candidate = os.path.join(os.path.abspath(entry or os.getcwd()), "needle")
        if os.path.isfile(os.path.join(candidate, "__init__.py")) and \
                not _same_dir(candidate, OWN_DIR) and not _is_bundled_copy(candidate):
            return candidate
    return None


class UserNeedleFinder:
    """Finds ``needle`` and ``needle.*`` in the user's tree, ahead of any other finder."""

    def __init__(self, root):
        self.root = root

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "needle":
            return importlib.machinery.PathFinder.find_spec(fullname,
                                                            [os.path.dirname(self.root)])
        if fullname.startswith("needle."):
            return importlib.machinery.PathFinder.find_spec(fullname, path)
        return None


def yield_to_user_needle():
    """Load the user's Needle as ``needle`` if there is one; True when it was loaded."""
    root = user_needle_dir()
    if root is None:
        return False
    if not any(isinstance(f, UserNeedleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, UserNeedleFinder(root))
    spec = importlib.util.spec_from_file_location(
        "needle", os.path.join(root, "__init__.py"), submodule_search_locations=[root])
    module = importlib.util.module_from_spec(spec)
    sys.modules["needle"] = module
    sys.modules.pop(__name__, None)  # this helper was a submodule of the bundled package
    spec.loader.exec_module(module)
    return True
