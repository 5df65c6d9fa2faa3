"""openai-files: work with OpenAI-style file storage from Python."""

__version__ = "0.1.0"

__all__ = ["__version__"]
