"""``python -m needle_qc``: the ``needle-qc`` command."""
import sys

from needle_qc.tools.cli import main

sys.exit(main())
