"""TextAssembler: what a stream may show, token by token (a character-level decode stands in for a tokenizer)."""

from __future__ import annotations

from collections.abc import Sequence

from talklike.inference.text import TextAssembler

BYTES = "Dobrý den, Brusel".encode()


def decode(ids: Sequence[int]) -> str:
    """Token i is byte i of BYTES: a token may end half-way through a UTF-8 character, as with real BPE."""
    return bytes(BYTES[i] for i in ids).decode("utf-8", errors="replace")


def feed(assembler: TextAssembler, count: int) -> list[tuple[str, bool]]:
    return [assembler.add_ids([i]) for i in range(count)]


def test_a_split_character_is_held_until_it_is_complete() -> None:
    assembler = TextAssembler(decode)
    deltas = [text for text, _ in feed(assembler, len(BYTES))]
    split = BYTES.index("ý".encode())
    assert deltas[split] == "" and deltas[split + 1] == "ý"  # no replacement character ever shown
    assert "".join(deltas) + assembler.finish() == "Dobrý den, Brusel"


def test_a_stop_sequence_split_over_tokens_is_cut_and_never_shown() -> None:
    assembler = TextAssembler(decode, ["Brusel"])
    shown, hit_at = "", None
    for i in range(len(BYTES)):
        text, hit = assembler.add_ids([i])
        shown += text
        if hit:
            hit_at = i
            break
    assert hit_at == len(BYTES) - 1 and shown == "Dobrý den, "
    assert "Br" not in shown  # the start of the stop sequence was held back while it could still match


def test_held_text_comes_out_at_the_end_when_no_stop_matches() -> None:
    assembler = TextAssembler(decode, ["Brno"])
    shown = "".join(text for text, hit in feed(assembler, len(BYTES)) if not hit)
    assert shown == "Dobrý den, Bru"  # the last three characters are held while "Brno" could follow
    assert shown + assembler.finish() == "Dobrý den, Brusel"


def test_text_backends_add_text_directly() -> None:
    assembler = TextAssembler(decode, ["STOP"])
    assert assembler.add_text("Ahoj ") == ("Ah", False)
    assert assembler.add_text("světe STOP a dál") == ("oj světe ", True)


def test_tokens_after_the_stop_in_one_chunk_are_counted_as_past_it() -> None:
    """A stream delivers several tokens at once; those after the stop sequence are not the answer's."""
    assembler = TextAssembler(decode, [" den"])
    first, hit = assembler.add_ids([0, 1, 2])
    assert not hit
    stop_ends = BYTES.index(b" den") + len(" den")  # the first id past the stop sequence
    text, hit = assembler.add_ids(list(range(3, stop_ends + 4)))
    assert hit and first + text == "Dobrý"
    assert assembler.ids_past_stop == 4
