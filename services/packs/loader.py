"""Persona packs: the on-disk format (``packs/README.md``), its loader and its validation.

A pack is a directory of YAML files. Loading checks everything the generator relies on, so
that generation itself never meets a surprise: every placeholder a text uses has a
non-empty vocabulary, every style has templates and a question that fits any topic, slip
rules compile, and no template carries the signature (the generator appends it). All
problems are collected and reported together, each naming the file, the item id and what
is wrong, because a pack author fixes them in one pass. Each record is read through its
pydantic model in ``pack_schema`` (the shapes and their messages); this module checks what
spans records and files (styles declared, topics known, ids unique, every style covered).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError
from talklike.common.errors import FailedPrecondition, InvalidArgument, NotFound
from talklike.packs.schema import (
    ID_RE,
    NAME_RE,
    PLACEHOLDER_VALUE,
    FreeformRecord,
    PersonaFile,
    QuestionRecord,
    Record,
    SlipRecord,
    StyleRecord,
    TemplateRecord,
)
from talklike.packs.schema import problems as problems_of

#: Built-in packs ship inside the package; user packs live under ``<home>/packs``.
BUILTIN_PACKS_DIR = Path(__file__).resolve().parent.parent / "generation" / "packs"

PLACEHOLDER_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: ``{name}`` in a text; anything else in braces is a problem (literal braces are not supported).
PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: A declared case of a declined placeholder (``2p``, ``7p``, ``co``); its slot is ``{name_case}``.
CASE_RE = re.compile(r"^[A-Za-z0-9]+$")
ANY = "*"

PACK_FILES = ("persona.yaml", "styles.yaml", "placeholders.yaml", "slips.yaml", "questions.yaml")
#: Optional file of hand-written evaluation questions, never used for training.
FREEFORM_FILE = "freeform.yaml"


@dataclass(frozen=True)
class PackProblem:
    """One thing wrong with a pack: where (file and item id) and what."""

    file: str
    item: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.file} [{self.item}]" if self.item else self.file
        return f"{where}: {self.problem}"


class PackInvalid(FailedPrecondition):
    """The pack exists but cannot be used; ``problems`` lists every reason."""

    def __init__(self, name: str, problems: list[PackProblem]) -> None:
        shown = "; ".join(str(p) for p in problems[:20])
        more = f"; ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        plural = "s" if len(problems) != 1 else ""
        super().__init__(f"pack {name!r} is invalid ({len(problems)} problem{plural}): {shown}{more}")
        self.name = name
        self.problems = problems


@dataclass(frozen=True)
class Style:
    """A way the persona talks (emotional outburst, irony...)."""

    id: str
    name: str
    description: str


@dataclass(frozen=True)
class Text:
    """A text with ``{placeholder}`` slots, split once so filling it is a join.

    ``parts`` alternates literal text (even indexes) and placeholder names (odd indexes),
    as ``re.split`` with one group returns them.
    """

    raw: str
    parts: tuple[str, ...]
    #: Distinct placeholder names in order of first use.
    names: tuple[str, ...]

    @classmethod
    def parse(cls, raw: str) -> Text:
        parts = tuple(PLACEHOLDER_RE.split(raw))
        return cls(raw=raw, parts=parts, names=tuple(dict.fromkeys(parts[1::2])))

    def fill(self, values: Mapping[str, str]) -> str:
        """The text with every placeholder replaced; KeyError if a value is missing."""
        parts = list(self.parts)
        for i in range(1, len(parts), 2):
            parts[i] = values[parts[i]]
        return "".join(parts)


@dataclass(frozen=True)
class Form:
    """A slot derived from another placeholder's value rather than drawn on its own.

    ``{tema_7p}`` is the declared case ``7p`` of the value that fills ``{tema}`` in the same
    answer, and ``{Tema}`` (``{Tema_7p}``) the same with its first letter upper-cased for a
    sentence start, so a text can name its topic in whatever case the sentence needs and
    still talk about one topic.
    """

    base: str
    #: The declared case, "" for the value itself.
    case: str
    capital: bool

    def of(self, value: str, declensions: Mapping[str, Mapping[str, Mapping[str, str]]]) -> str:
        """The form of ``value`` (a value of ``base``)."""
        if self.case:
            value = declensions[self.base][value][self.case]
        return value[:1].upper() + value[1:] if self.capital else value


def draws_of(text: Text, forms: Mapping[str, Form]) -> tuple[str, ...]:
    """The names of ``text`` with each derived slot replaced by its base, in order of first use."""
    return tuple(dict.fromkeys(forms[n].base if n in forms else n for n in text.names))


@dataclass(frozen=True)
class Template:
    """One answer template: its style, its topic (``*`` = whatever fills the topic placeholder)."""

    id: str
    style: str
    topic: str
    text: Text
    file: str
    #: Placeholders whose values are drawn, in order of first use: the text's own names with
    #: each derived slot (a case form, a capitalised value) replaced by its base.
    draws: tuple[str, ...] = ()


@dataclass(frozen=True)
class Slip:
    """A deliberate language slip: the first match of ``find`` is replaced by ``replace``."""

    id: str
    description: str
    find: re.Pattern[str]
    replace: str


@dataclass(frozen=True)
class Question:
    """A journalist's question template; fits ``topic`` (or any, ``*``) and the listed styles."""

    id: str
    topic: str
    styles: tuple[str, ...]
    text: Text

    def fits(self, topic: str, style: str) -> bool:
        """True when this question suits an answer about ``topic`` in ``style``."""
        return (self.topic == ANY or self.topic == topic) and (ANY in self.styles or style in self.styles)


@dataclass(frozen=True)
class FreeformQuestion:
    """A hand-written evaluation question about one topic; held out from generation entirely."""

    id: str
    topic: str
    text: str


@dataclass(frozen=True)
class Pack:
    """A loaded, validated persona pack."""

    name: str
    display_name: str
    language: str
    signature: str
    satire: bool
    description: str
    system_prompt: str
    topic_placeholder: str
    catchphrases: tuple[str, ...]
    styles: tuple[Style, ...]
    placeholders: dict[str, tuple[str, ...]]
    templates: tuple[Template, ...]
    slips: tuple[Slip, ...]
    questions: tuple[Question, ...]
    path: Path
    source: str
    #: sha256 over the pack's files, so a dataset's stats name exactly the pack it came from.
    digest: str
    templates_by_style: dict[str, tuple[Template, ...]] = field(default_factory=dict)
    #: Case forms of declined placeholders: placeholder → value → case → form.
    declensions: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    #: Every derived slot name (``tema_7p``, ``Tema``...) and how it is made.
    forms: dict[str, Form] = field(default_factory=dict)
    #: Questions for the evaluation only (``freeform.yaml``); no example ever contains them.
    freeform_questions: tuple[FreeformQuestion, ...] = ()

    @property
    def style_ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.styles)

    @property
    def topics(self) -> tuple[str, ...]:
        """The topic vocabulary (the values of the topic placeholder)."""
        return self.placeholders[self.topic_placeholder]

    def template_capacity(self, template: Template) -> int:
        """Distinct fillings of ``template`` (a fixed topic counts as one value; forms add none)."""
        product = 1
        for name in template.draws:
            if not (name == self.topic_placeholder and template.topic != ANY):
                product *= len(self.placeholders[name])
        return product

    def draws(self, text: Text) -> tuple[str, ...]:
        """The placeholders to draw for ``text``: its names with derived slots replaced by their base."""
        return draws_of(text, self.forms)

    def complete(self, text: Text, values: dict[str, str]) -> dict[str, str]:
        """``values`` (drawn base values) plus every derived slot ``text`` uses, made from them."""
        derived = [name for name in text.names if name in self.forms and name not in values]
        if not derived:
            return values
        out = dict(values)
        for name in derived:
            form = self.forms[name]
            out[name] = form.of(values[form.base], self.declensions)
        return out

    def combinations(self) -> int:
        """How many distinct answers the templates can produce before slips (an upper bound)."""
        return sum(self.template_capacity(t) for t in self.templates)

    def counts(self) -> dict[str, int]:
        """The numbers ``packs show --json`` and ListPacks report."""
        return {
            "templates": len(self.templates),
            "styles": len(self.styles),
            "placeholders": len(self.placeholders),
            "placeholder_values": sum(len(v) for v in self.placeholders.values()),
            "questions": len(self.questions),
            "slips": len(self.slips),
            "topics": len(self.topics),
            "catchphrases": len(self.catchphrases),
            "declined_placeholders": len(self.declensions),
            "freeform_questions": len(self.freeform_questions),
        }


@dataclass(frozen=True)
class PackEntry:
    """A pack directory found on disk, loaded or with the problems that stop it loading."""

    name: str
    path: Path
    source: str
    pack: Pack | None
    problems: tuple[PackProblem, ...]


def pack_dirs(home: Path | None) -> dict[str, tuple[Path, str]]:
    """Every pack directory by name: built-in ones, then user ones under ``<home>/packs`` (which shadow)."""
    found: dict[str, tuple[Path, str]] = {}
    roots = [(BUILTIN_PACKS_DIR, "builtin")]
    if home is not None:
        roots.append((home / "packs", "user"))
    for root, source in roots:
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if child.is_dir() and (child / "persona.yaml").is_file():
                found[child.name] = (child, source)
    return found


_CACHE: dict[Path, tuple[tuple[tuple[str, int, int], ...], Pack]] = {}


def _fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    entries = []
    for file in sorted(path.rglob("*.y*ml")):
        stat = file.stat()
        entries.append((str(file.relative_to(path)), stat.st_mtime_ns, stat.st_size))
    return tuple(entries)


def load_pack(name: str, home: Path | None = None) -> Pack:
    """The pack called ``name``: NotFound when no such directory, PackInvalid when it is broken.

    Loaded packs are cached by their files' sizes and modification times, so repeated
    requests do not re-parse hundreds of templates while an edited pack is re-read.
    """
    if not name or not NAME_RE.match(name):
        raise InvalidArgument("pack", f"{name!r} is not a pack name (lower-case letters, digits, - and _)")
    dirs = pack_dirs(home)
    if name not in dirs:
        known = ", ".join(sorted(dirs)) or "none"
        raise NotFound("pack", name, f"known packs: {known}; user packs go under <home>/packs/{name}/")
    path, source = dirs[name]
    fingerprint = _fingerprint(path)
    cached = _CACHE.get(path)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    pack = load_pack_dir(path, source)
    _CACHE[path] = (fingerprint, pack)
    return pack


def list_packs(home: Path | None = None) -> list[PackEntry]:
    """Every pack directory, each loaded or with its problems (a broken pack is still listed)."""
    entries = []
    for name, (path, source) in sorted(pack_dirs(home).items()):
        try:
            pack = load_pack(name, home)
        except PackInvalid as error:
            entries.append(PackEntry(name, path, source, None, tuple(error.problems)))
        else:
            entries.append(PackEntry(name, path, source, pack, ()))
    return entries


ModelT = TypeVar("ModelT", bound=Record)


class _Checker:
    """Collects problems while reading a pack directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[PackProblem] = []

    def add(self, file: str, item: str, problem: str) -> None:
        self.problems.append(PackProblem(file, item, problem))

    def read(self, file: str, key: str | None) -> Any:
        """The YAML document of ``file`` (or its ``key`` entry); None after recording a problem."""
        target = self.path / file
        if not target.is_file():
            self.add(file, "", "file is missing")
            return None
        try:
            document = yaml.load(target.read_text(encoding="utf-8"), Loader=_Loader)
        except UnicodeDecodeError as error:
            self.add(file, "", f"not valid UTF-8 ({error.reason} at byte {error.start})")
            return None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            self.add(file, "", f"not valid YAML{where}: {getattr(error, 'problem', error)}")
            return None
        if key is None:
            if not isinstance(document, dict):
                self.add(file, "", "must be a mapping of keys to values")
                return None
            return document
        if not isinstance(document, dict) or key not in document:
            self.add(file, "", f"must have a top-level `{key}:` key")
            return None
        return document[key]

    def model(self, file: str, item: str, model: type[ModelT], record: Mapping[str, Any]) -> ModelT | None:
        """``record`` as ``model``; None after recording each problem under ``item``."""
        try:
            return model.model_validate(record)
        except ValidationError as error:
            for _, message in problems_of(error):
                self.add(file, item, message)
            return None

    def records(self, file: str, items: Any, what: str, model: type[ModelT]) -> list[tuple[str, ModelT]]:
        """``(id, record)`` of a list of mappings, each with an id and valid as ``model``."""
        if not isinstance(items, list) or not items:
            if items is not None:
                self.add(file, "", f"`{what}` must be a non-empty list")
            return []
        out: list[tuple[str, ModelT]] = []
        for index, record in enumerate(items):
            if not isinstance(record, dict):
                self.add(file, f"#{index + 1}", f"each entry of `{what}` must be a mapping")
                continue
            raw_id = record.get("id")
            item = str(raw_id) if raw_id is not None else f"#{index + 1}"
            if not isinstance(raw_id, str) or not ID_RE.match(raw_id):
                self.add(file, item, "`id` must be a string of letters, digits, '.', '_' or '-'")
                continue
            parsed = self.model(file, raw_id, model, record)
            if parsed is not None:
                out.append((raw_id, parsed))
        return out

    def unique(self, file: str, records: list[tuple[str, ModelT]], what: str) -> list[tuple[str, ModelT]]:
        """``records`` less the repeats of an id (each one a problem: ``duplicate <what> id``)."""
        seen: set[str] = set()
        out = []
        for record_id, record in records:
            if record_id in seen:
                self.add(file, record_id, f"duplicate {what} id")
                continue
            seen.add(record_id)
            out.append((record_id, record))
        return out


#: Safe YAML (no object construction), with libyaml's C parser when it is there: packs hold
#: hundreds of templates and ListPacks parses every pack.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _text_problems(text: Text, known: Mapping[str, Any], signature: str, what: str) -> Iterable[str]:
    for name in text.names:
        if name in known:
            continue
        base, _, case = name.rpartition("_")
        if base and base[:1].lower() + base[1:] in known and CASE_RE.match(case):
            yield (
                f"unknown placeholder {{{name}}} in `{what}`: case {case!r} of "
                f"{{{base[:1].lower() + base[1:]}}} is not declared under `declensions:` in placeholders.yaml"
            )
        else:
            yield f"unknown placeholder {{{name}}} in `{what}` (declare it in placeholders.yaml)"
    stripped = PLACEHOLDER_RE.sub("", text.raw)
    if "{" in stripped or "}" in stripped:
        yield f"stray brace in `{what}`: placeholders are written {{name}} and literal braces are not allowed"
    if signature and signature.casefold() in text.raw.casefold():
        yield f"`{what}` contains the signature {signature!r}; the generator appends it to every answer"


@dataclass
class _Vocabulary:
    """placeholders.yaml read: the values, their case forms, and every name a text may use."""

    placeholders: dict[str, tuple[str, ...]]
    declensions: dict[str, dict[str, dict[str, str]]]
    forms: dict[str, Form]
    #: Every slot a text may name; empty when the file gave no placeholders at all.
    known: dict[str, Any]
    #: False when the file or its ``placeholders:`` is missing (other checks then stay quiet).
    present: bool


def load_pack_dir(path: Path, source: str = "user") -> Pack:
    """Read and validate the pack in ``path``; PackInvalid lists every problem found.

    The files are read in a fixed order (persona, styles, placeholders, templates, slips,
    questions, free-form questions), each record through its model in ``pack_schema``, so the
    problems come out in the order an author reads the pack.
    """
    check = _Checker(path)
    name = path.name
    persona = _read_persona(check, name)
    styles = _read_styles(check)
    style_ids = {s.id for s in styles}
    vocabulary = _read_placeholders(check)
    topic_placeholder = persona.topic_placeholder if persona else ""
    if topic_placeholder and vocabulary.present and topic_placeholder not in vocabulary.placeholders:
        check.add(
            "persona.yaml",
            "topic_placeholder",
            f"topic placeholder {{{topic_placeholder}}} has no vocabulary in placeholders.yaml",
        )
    topics = set(vocabulary.placeholders.get(topic_placeholder, ()))
    signature = persona.signature if persona else ""
    templates, template_files = _read_templates(
        check, style_ids, vocabulary, topic_placeholder, topics, signature
    )
    by_style = {s: tuple(t for t in templates if t.style == s) for s in style_ids}
    for style_id in sorted(style_ids):
        if template_files and not by_style[style_id]:
            check.add("templates/", style_id, "style has no templates (styles are mixed evenly)")
    slips = _read_slips(check)
    questions = _read_questions(check, style_ids, vocabulary.known, topic_placeholder, topics, signature)
    freeform = _freeform(check, topics, topic_placeholder)

    if check.problems or persona is None:
        raise PackInvalid(name, check.problems)
    digest = hashlib.sha256()
    for file_path in sorted(path.rglob("*.yaml")):
        digest.update(str(file_path.relative_to(path)).encode())
        digest.update(file_path.read_bytes())
    return Pack(
        name=name,
        display_name=persona.display_name,
        language=persona.language,
        signature=persona.signature,
        satire=persona.satire,
        description=persona.description,
        system_prompt=persona.system_prompt,
        topic_placeholder=persona.topic_placeholder,
        catchphrases=persona.catchphrases,
        styles=tuple(styles),
        placeholders=vocabulary.placeholders,
        templates=tuple(templates),
        slips=tuple(slips),
        questions=tuple(questions),
        path=path,
        source=source,
        digest=digest.hexdigest(),
        templates_by_style=by_style,
        declensions=vocabulary.declensions,
        forms=vocabulary.forms,
        freeform_questions=freeform,
    )


def _read_persona(check: _Checker, directory: str) -> PersonaFile | None:
    """persona.yaml as a PersonaFile; None when it is missing or has any problem (each recorded by field)."""
    document = check.read("persona.yaml", None)
    if document is None:
        return None
    try:
        return PersonaFile.model_validate(document, context={"directory": directory})
    except ValidationError as error:
        for field_name, message in problems_of(error):
            check.add("persona.yaml", field_name, message)
        return None


def _read_styles(check: _Checker) -> list[Style]:
    records = check.records("styles.yaml", check.read("styles.yaml", "styles"), "styles", StyleRecord)
    return [
        Style(style_id, r.name, r.description)
        for style_id, r in check.unique("styles.yaml", records, "style")
    ]


def _read_placeholders(check: _Checker) -> _Vocabulary:
    """placeholders.yaml: each placeholder's values (every bad value a problem, the good ones kept)."""
    file = "placeholders.yaml"
    document = check.read(file, None)
    raw = None
    if document is not None:
        if "placeholders" in document:
            raw = document["placeholders"]
        else:
            check.add(file, "", "must have a top-level `placeholders:` key")
    placeholders: dict[str, tuple[str, ...]] = {}
    if raw is not None and not isinstance(raw, dict):
        check.add(file, "", "`placeholders` must map each name to a list of values")
    elif isinstance(raw, dict):
        for key, values in raw.items():
            pname = str(key)
            if not PLACEHOLDER_NAME_RE.match(pname):
                check.add(file, pname, "placeholder names are letters, digits and _")
                continue
            if not isinstance(values, list) or not values:
                check.add(file, pname, "empty vocabulary: give a non-empty list of values")
                continue
            clean: list[str] = []
            for value in values:
                try:
                    text = PLACEHOLDER_VALUE.validate_python(value)
                except ValidationError as error:
                    for _, message in problems_of(error):
                        check.add(file, pname, message)
                    continue
                if text in clean:
                    check.add(file, pname, f"duplicate value {text!r}")
                else:
                    clean.append(text)
            if clean:
                placeholders[pname] = tuple(clean)
    declensions = _declensions(check, placeholders, (document or {}).get("declensions"))
    forms = _forms(check, placeholders, declensions)
    known: dict[str, Any] = {**placeholders, **forms} if raw else {}
    return _Vocabulary(placeholders, declensions, forms, known, raw is not None)


def _read_templates(
    check: _Checker,
    style_ids: set[str],
    vocabulary: _Vocabulary,
    topic_placeholder: str,
    topics: set[str],
    signature: str,
) -> tuple[list[Template], list[Path]]:
    """Every templates/*.yaml: ids unique across the pack, styles declared, topics known."""
    templates: list[Template] = []
    template_dir = check.path / "templates"
    template_files = sorted(template_dir.glob("*.yaml")) if template_dir.is_dir() else []
    if not template_files:
        check.add("templates/", "", "no templates: add templates/<style_id>.yaml files")
    seen_ids: set[str] = set()
    for file_path in template_files:
        file = f"templates/{file_path.name}"
        for template_id, record in check.records(
            file, check.read(file, "templates"), "templates", TemplateRecord
        ):
            if template_id in seen_ids:
                check.add(file, template_id, "duplicate template id (ids are unique in the whole pack)")
                continue
            seen_ids.add(template_id)
            style, topic = record.style, record.topic
            if style not in style_ids:
                check.add(file, template_id, f"style {style!r} is not declared in styles.yaml")
                continue
            text = Text.parse(record.text)
            for problem in _text_problems(text, vocabulary.known, signature, "text"):
                check.add(file, template_id, problem)
            draws = draws_of(text, vocabulary.forms)
            if not isinstance(topic, str) or not topic.strip():
                check.add(file, template_id, '`topic` must be "*" or a value of the topic placeholder')
                continue
            if topic == ANY:
                if topic_placeholder and topic_placeholder not in draws:
                    check.add(
                        file,
                        template_id,
                        f'topic "*" needs {{{topic_placeholder}}} in the text (or one of its forms, '
                        "or name the fixed topic)",
                    )
            elif topics and topic not in topics:
                check.add(
                    file,
                    template_id,
                    f"topic {topic!r} is not a value of {{{topic_placeholder}}} in placeholders.yaml",
                )
            templates.append(Template(template_id, str(style), topic, text, file, draws))
    return templates, template_files


def _read_slips(check: _Checker) -> list[Slip]:
    file = "slips.yaml"
    records = check.records(file, check.read(file, "slips") or [], "slips", SlipRecord)
    return [
        Slip(slip_id, r.description, r.pattern, r.replace)
        for slip_id, r in check.unique(file, records, "slip")
    ]


def _read_questions(
    check: _Checker,
    style_ids: set[str],
    known: Mapping[str, Any],
    topic_placeholder: str,
    topics: set[str],
    signature: str,
) -> list[Question]:
    """questions.yaml: styles declared, topics known, and every style with a question for any topic."""
    file = "questions.yaml"
    records = check.records(file, check.read(file, "questions"), "questions", QuestionRecord)
    questions: list[Question] = []
    for question_id, record in check.unique(file, records, "question"):
        unknown = [s for s in record.styles if s != ANY and s not in style_ids]
        if unknown:
            check.add(file, question_id, f"styles {unknown} are not declared in styles.yaml")
        if record.topic != ANY and topics and record.topic not in topics:
            check.add(
                file,
                question_id,
                f"topic {record.topic!r} is not a value of {{{topic_placeholder}}} in placeholders.yaml",
            )
        text = Text.parse(record.text)
        for problem in _text_problems(text, known, signature, "text"):
            check.add(file, question_id, problem)
        questions.append(Question(question_id, record.topic, record.styles, text))
    if questions:
        for style_id in sorted(style_ids):
            if not any(q.topic == ANY and (ANY in q.styles or style_id in q.styles) for q in questions):
                check.add(
                    file,
                    style_id,
                    'style has no question with topic "*", so some answers would get no question',
                )
    return questions


def _declensions(
    check: _Checker, placeholders: Mapping[str, tuple[str, ...]], raw: Any
) -> dict[str, dict[str, dict[str, str]]]:
    """The optional ``declensions:`` of placeholders.yaml, checked complete.

    Every value of a declined placeholder needs every case declared for that placeholder,
    because the engine fills ``{name_case}`` with the form of whatever value it drew.
    """
    file = "placeholders.yaml"
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        check.add(file, "declensions", "`declensions` must map a placeholder to its values' case forms")
        return {}
    out: dict[str, dict[str, dict[str, str]]] = {}
    for key, by_value in raw.items():
        pname = str(key)
        item = f"declensions {pname}"
        if pname not in placeholders:
            check.add(file, item, f"{{{pname}}} is not a placeholder with a vocabulary")
            continue
        if not isinstance(by_value, dict):
            check.add(file, item, "must map each value of the placeholder to its case forms")
            continue
        cases: dict[str, None] = {}
        table: dict[str, dict[str, str]] = {}
        for value, row in by_value.items():
            value_item = f"{item}: {value}"
            if str(value) not in placeholders[pname]:
                check.add(file, value_item, f"{value!r} is not a value of {{{pname}}}")
                continue
            if not isinstance(row, dict) or not row:
                check.add(file, value_item, "must map each case (e.g. 2p) to a form")
                continue
            forms: dict[str, str] = {}
            for case, form in row.items():
                case_name = str(case)
                if not CASE_RE.match(case_name):
                    check.add(file, value_item, f"case {case_name!r} must be letters and digits only")
                elif not isinstance(form, str) or not form.strip():
                    check.add(file, value_item, f"case {case_name}: form must be a non-empty string")
                elif "{" in form or "}" in form or "\n" in form.strip():
                    check.add(
                        file, value_item, f"case {case_name}: form {form!r} must be one line without braces"
                    )
                else:
                    forms[case_name] = form.strip()
                    cases.setdefault(case_name)
            table[str(value)] = forms
        for value in placeholders[pname]:
            have = table.get(value)
            if have is None:
                check.add(file, f"{item}: {value}", "value has no case forms (every value needs every case)")
                continue
            missing = [c for c in cases if c not in have]
            if missing:
                check.add(
                    file, f"{item}: {value}", f"missing case forms {missing} (declared for other values)"
                )
        out[pname] = table
    return out


def _forms(
    check: _Checker,
    placeholders: Mapping[str, tuple[str, ...]],
    declensions: Mapping[str, Mapping[str, Mapping[str, str]]],
) -> dict[str, Form]:
    """Every derived slot: ``{name_case}`` per declared case, and ``{Name}`` / ``{Name_case}``.

    A declared placeholder always wins over a derived name; a case slot that collides with
    one is a problem, because a text could not say which of the two it means.
    """
    forms: dict[str, Form] = {}
    for pname in placeholders:
        cases = dict.fromkeys(c for row in declensions.get(pname, {}).values() for c in row)
        for case in ("", *cases):
            slot = f"{pname}_{case}" if case else pname
            if case and slot in placeholders:
                check.add(
                    "placeholders.yaml",
                    f"declensions {pname}",
                    f"case {case!r} makes {{{slot}}}, which is already a placeholder of its own",
                )
                continue
            if case:
                forms[slot] = Form(pname, case, capital=False)
            capital = slot[:1].upper() + slot[1:]
            if capital != slot and capital not in placeholders:
                forms[capital] = Form(pname, case, capital=True)
    return forms


def _freeform(check: _Checker, topics: set[str], topic_placeholder: str) -> tuple[FreeformQuestion, ...]:
    """The optional ``freeform.yaml``: evaluation questions, one known topic each."""
    if not (check.path / FREEFORM_FILE).is_file():
        return ()
    records = check.records(
        FREEFORM_FILE, check.read(FREEFORM_FILE, "questions"), "questions", FreeformRecord
    )
    out: list[FreeformQuestion] = []
    for question_id, record in check.unique(FREEFORM_FILE, records, "question"):
        topic = record.topic
        if not isinstance(topic, str) or (topics and topic not in topics):
            check.add(
                FREEFORM_FILE, question_id, f"topic {topic!r} is not a value of {{{topic_placeholder}}}"
            )
            continue
        out.append(FreeformQuestion(question_id, topic, record.text))
    return tuple(out)


def saturating(value: int, limit: int = 2**63 - 1) -> int:
    """``value`` capped at ``limit`` (combination counts overflow any integer field quickly)."""
    return min(value, limit)


def describe(pack: Pack) -> dict[str, Any]:
    """The pack as ``packs show --json`` prints it: metadata, counts, styles and topics."""
    counts = pack.counts()
    per_style = {s.id: len(pack.templates_by_style.get(s.id, ())) for s in pack.styles}
    combos = pack.combinations()
    return {
        "name": pack.name,
        "display_name": pack.display_name,
        "language": pack.language,
        "signature": pack.signature,
        "satire": pack.satire,
        "description": pack.description,
        "source": pack.source,
        "path": str(pack.path),
        "digest": pack.digest,
        **counts,
        "combinations": saturating(combos),
        "combinations_log10": round(math.log10(combos), 2) if combos else 0.0,
        "styles_detail": [
            {"id": s.id, "name": s.name, "description": s.description, "templates": per_style[s.id]}
            for s in pack.styles
        ],
        "placeholders_detail": {name: len(values) for name, values in pack.placeholders.items()},
        "topic_placeholder": pack.topic_placeholder,
        "topics_list": list(pack.topics),
        "catchphrases_list": list(pack.catchphrases),
    }
