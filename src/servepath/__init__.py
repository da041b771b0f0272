"""servepath: serve a model as a fast HTTP API, and see every hop between its callers and it."""

from __future__ import annotations

from servepath.config import Settings
from servepath.errors import ServepathError

__version__ = "0.1.0"
__all__ = ["ServepathError", "Settings", "__version__"]
