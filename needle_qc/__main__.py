"""``python -m needle_qc``: the ``needle-qc`` command."""
import sys

from .cli import main

sys.exit(main())
