"""The shapes of a pack's YAML files as pydantic models, with the messages a pack author reads.

Each model checks one record on its own: a persona card, a style, a template, a slip, a
question, a free-form question, one placeholder value. Its validators raise
``PydanticCustomError`` with the problem as the author should read it ("`text` must be a
non-empty string"), so ``problems`` turns a ``ValidationError`` into ``file [item]: problem``
lines without rewording. What needs more than one record (a template's style is declared, a
topic is a value of the topic placeholder, ids are unique) is checked by the loader in
``packs.py``, which reads the files through these models.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def problem(message: str) -> PydanticCustomError:
    """A validation error whose message is ``message`` as it is (no template fields)."""
    return PydanticCustomError("pack", message)


def _text(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str) or not value.strip():
        raise problem(f"`{info.field_name}` must be a non-empty string")
    return value.strip()


def _line(value: Any, info: ValidationInfo) -> str:
    text = _text(value, info)
    if "\n" in text:
        raise problem(f"`{info.field_name}` must be one line")
    return text


def _bool(value: Any, info: ValidationInfo) -> bool:
    if not isinstance(value, bool):
        raise problem(f"`{info.field_name}` must be true or false")
    return value


def _optional_text(value: Any) -> str:
    return str(value or "")


def _pack_name(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise problem("`name` must be lower-case letters, digits, - and _")
    directory = (info.context or {}).get("directory")
    if directory is not None and value != directory:
        raise problem(f"`name` is {value!r} but the directory is {directory!r}")
    return value


def _language(value: Any, info: ValidationInfo) -> str:
    language = _line(value, info)
    if not LANGUAGE_RE.match(language):
        raise problem(f"`language` {language!r} is not a BCP 47 tag such as cs or en")
    return language


def _phrases(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(p, str) and p.strip() for p in value):
        raise problem("`catchphrases` must be a list of non-empty strings")
    return tuple(p.strip() for p in value)


def _find(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise problem("`find` must be a non-empty regular expression")
    return value


def _replace(value: Any) -> str:
    if not isinstance(value, str):
        raise problem("`replace` must be a string (it may be empty)")
    return value


def _styles(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        raise problem('`styles` must be a list of style ids or ["*"]')
    return tuple(value)


def _topic(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise problem('`topic` must be "*" or a value of the topic placeholder')
    return value


def _finished(value: Any, info: ValidationInfo) -> str:
    text = _line(value, info)
    if "{" in text or "}" in text:
        raise problem("`text` is a finished question: no braces or placeholders")
    return text


def _value(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise problem(f"value {value!r} must be a non-empty string")
    if "{" in value or "}" in value:
        raise problem(f"value {value!r} contains a brace (no nesting)")
    if "\n" in value.strip():
        raise problem(f"value {value!r} must be one line")
    return value.strip()


#: A non-empty string, stripped; a missing key reads as the same problem.
TextField = Annotated[str, PlainValidator(_text)]
#: A non-empty string of one line, stripped.
LineField = Annotated[str, PlainValidator(_line)]


def required() -> Any:
    """A field whose absence is reported by its own validator (the message names the key)."""
    return Field(default=None, validate_default=True)


class Record(BaseModel):
    """One entry of a file: unknown keys are ignored (a pack may carry notes)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class PersonaFile(Record):
    """persona.yaml: who speaks. The validation context's ``directory`` is the pack's folder name."""

    name: Annotated[str, PlainValidator(_pack_name)] = required()
    display_name: LineField = required()
    language: Annotated[str, PlainValidator(_language)] = required()
    signature: LineField = required()
    satire: Annotated[bool, PlainValidator(_bool)] = required()
    description: TextField = required()
    system_prompt: TextField = required()
    topic_placeholder: LineField = required()
    catchphrases: Annotated[tuple[str, ...], PlainValidator(_phrases)] = ()


class StyleRecord(Record):
    """styles.yaml: a way the persona talks."""

    name: LineField = required()
    description: TextField = required()


class TemplateRecord(Record):
    """templates/<style>.yaml: an answer template; its style and topic are checked by the loader."""

    #: Checked by the loader against styles.yaml and the topic placeholder.
    style: Any = None
    topic: Any = None
    text: TextField = required()


class SlipRecord(Record):
    """slips.yaml: a deliberate slip, a regular expression and its replacement that compile."""

    description: Annotated[str, PlainValidator(_optional_text)] = ""
    find: Annotated[str, PlainValidator(_find)] = required()
    replace: Annotated[str, PlainValidator(_replace)] = required()

    @model_validator(mode="after")
    def _compiles(self) -> SlipRecord:
        try:
            re.compile(self.find).sub(self.replace, "")  # checks group references in the replacement
        except re.error as error:
            raise problem(f"bad regular expression or replacement: {error}") from error
        return self

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(self.find)


class QuestionRecord(Record):
    """questions.yaml: a journalist's question template for a topic (or any) and some styles."""

    styles: Annotated[tuple[str, ...], PlainValidator(_styles)] = required()
    topic: Annotated[str, PlainValidator(_topic)] = required()
    text: TextField = required()


class FreeformRecord(Record):
    """freeform.yaml: a hand-written evaluation question; its topic is checked by the loader."""

    #: Checked by the loader against the topic placeholder.
    topic: Any = None
    text: Annotated[str, PlainValidator(_finished)] = required()


#: One value of a placeholder's vocabulary: a non-empty line without braces.
PLACEHOLDER_VALUE: TypeAdapter[str] = TypeAdapter(Annotated[str, PlainValidator(_value)])


def problems(error: ValidationError) -> Iterator[tuple[str, str]]:
    """(field, message) of every problem in ``error``; the field is "" for the record as a whole."""
    for detail in error.errors():
        yield (str(detail["loc"][0]) if detail["loc"] else ""), detail["msg"]
