"""The openai-files server: an OpenAI-compatible Files API (install the `[server]` extra).

Example:
    >>> from openai_files.server import Settings, create_app
    >>> app = create_app(Settings(data_dir=Path("./data")))  # doctest: +SKIP
"""

from ._app import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
