"""``python -m coursekit``: same as the ``coursekit`` console script."""
import sys

from coursekit.cli import main

sys.exit(main())
