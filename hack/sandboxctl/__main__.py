"""`python hack/sandboxctl ARGS` (what hack/sandbox runs) or `python -m sandboxctl`."""

import sys
from pathlib import Path

if not __package__:
    # Run as a folder: make the package importable by its name.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandboxctl.cli import main  # noqa: E402

sys.exit(main())
