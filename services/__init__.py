"""talklike: teach a language model to talk like a persona, and prove it."""

__version__ = "0.1.0"
