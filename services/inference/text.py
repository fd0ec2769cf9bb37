"""Token ids to text deltas, with stop sequences, for a stream.

Two things make this more than ``decode``: a token can end half-way through a multi-byte
character (hold it until the character is complete), and a stop sequence can arrive split
over several tokens (hold back any tail that could be the start of one, so the client never
sees a stop sequence it asked to be cut).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


class TextAssembler:
    """Accumulates generated ids; ``add`` returns the text safe to emit and whether a stop sequence hit."""

    def __init__(self, decode: Callable[[Sequence[int]], str], stop_sequences: Sequence[str] = ()) -> None:
        self._decode = decode
        self._stops = [s for s in stop_sequences if s]
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._ids: list[int] = []
        self._text = ""
        self.emitted = ""
        #: After a stop sequence: how many of the last ``add_ids`` ids came after the token that
        #: completed it. A streamed chunk holds several tokens, and those past the stop are not
        #: part of the answer, so they are not counted as completion tokens.
        self.ids_past_stop = 0

    def add_ids(self, ids: Sequence[int]) -> tuple[str, bool]:
        """Add token ids; returns (new text to emit, stop sequence found)."""
        before = len(self._ids)
        self._ids.extend(ids)
        delta, hit = self.add_text(None)
        if hit:
            needed = next(
                k
                for k in range(1, len(ids) + 1)
                if k == len(ids) or self._find_stop(self._decode(self._ids[: before + k])) != -1
            )
            self.ids_past_stop = len(ids) - needed
        return delta, hit

    def _find_stop(self, text: str) -> int:
        """Where the first stop sequence (in the caller's order) starts in ``text``; -1 if none.

        Only the part not yet emitted (and a stop's length before it) is searched: what was
        emitted was already checked.
        """
        for stop in self._stops:
            index = text.find(stop, max(0, len(self.emitted) - len(stop)))
            if index != -1:
                return index
        return -1

    def add_text(self, text: str | None) -> tuple[str, bool]:
        """Add text directly (backends that produce text); ``None`` re-decodes the ids."""
        self._text = self._decode(self._ids) if text is None else self._text + text
        index = self._find_stop(self._text)
        if index != -1:
            return self._emit(self._text[:index]), True
        safe = self._text
        if safe.endswith("\ufffd"):
            safe = safe.rstrip("\ufffd")
        if self._hold:
            safe = safe[: max(len(self.emitted), len(safe) - self._hold)]
        return self._emit(safe), False

    def finish(self) -> str:
        """Flush what was held back (no stop sequence came)."""
        return self._emit(self._text.rstrip("\ufffd"))

    def _emit(self, upto: str) -> str:
        delta = upto[len(self.emitted) :] if upto.startswith(self.emitted) else ""
        self.emitted += delta
        return delta
