"""The openai-files server: an OpenAI-compatible Files API (install the `[server]` extra).

Example:
    >>> from openai_files.server import Settings, create_app
    >>> app = create_app(Settings(data_dir=Path("./data")))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import Settings

if TYPE_CHECKING:
    from ._app import create_app

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    # The app (and Starlette with it) is imported on first use, so that the settings, and
    # the `openai-files` command built on them, load without the [server] extra.
    if name == "create_app":
        from ._app import create_app

        return create_app
    raise AttributeError(name)
