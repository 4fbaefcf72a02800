"""``python -m coursekit``: same as the ``coursekit`` console script."""
import sys

from coursekit.cli import main

# guarded: processes that multiprocessing spawns (a Dask LocalCluster's workers in `coursekit bench`)
# import this module again under another name and must not run the command a second time
if __name__ == "__main__":
    sys.exit(main())
