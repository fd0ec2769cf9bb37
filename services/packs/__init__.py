"""Persona packs: the on-disk format, its pydantic schema and its loader, shared by every reader.

The generation service generates from packs, evaluation reads a pack's lexicon and free-form
questions, and the CLI lists packs without a service (reading a pack needs none); so the format
lives here, beside ``talklike.models``, not inside one service. The built-in packs' files stay
under ``generation/packs/`` (``loader.BUILTIN_PACKS_DIR``).
"""
