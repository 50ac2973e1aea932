"""The latent-space explorer: `aevb serve RUN` (a local web app; Flask is imported only here)."""

from .app import create_app, listen, make_server
from .explorer import ApiError, Explorer

__all__ = ["ApiError", "Explorer", "create_app", "listen", "make_server"]
