"""The OpenAI-compatible stand-in for vLLM lives in hack/ (the sandbox runs
it too); tests import it from here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))

from openai_standin import StandIn  # noqa: E402  pylint: disable=wrong-import-position

__all__ = ["StandIn"]
