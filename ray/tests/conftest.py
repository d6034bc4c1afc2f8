"""Stage-1 tests import `embsolve_ray` from this checkout (also when it is not pip-installed)."""

import os
import sys
from pathlib import Path

PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])
if PACKAGE_PARENT not in sys.path:
    sys.path.insert(0, PACKAGE_PARENT)
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
