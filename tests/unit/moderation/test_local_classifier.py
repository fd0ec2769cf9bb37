"""The local lexicon classifier: normalization, Czech inflection, context rules, satire, the lexicon's checks."""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest
import yaml
from talklike.moderation.categories import CATEGORIES, DEFAULT_THRESHOLDS, FLAG_AT
from talklike.moderation.local import (
    LexiconError,
    LocalBackend,
    LocalClassifier,
    compile_lexicon,
    default_lexicon,
    normalize,
    tokenize,
)


@pytest.fixture(scope="module")
def clf() -> LocalClassifier:
    return LocalClassifier()


def flagged(clf: LocalClassifier, text: str) -> set[str]:
    return {name for name, flag in clf.classify(text).flags.items() if flag}


def over_policy(clf: LocalClassifier, text: str) -> list[str]:
    return clf.classify(text).violations(DEFAULT_THRESHOLDS)


def test_normalization_ignores_case_diacritics_and_stretched_letters() -> None:
    assert normalize("ZLODĚJ Žluťoučký KAMPÁÁÁÁŇ") == "zlodej zlutoucky kampan"
    assert tokenize("Fuuuuck, ty kreténe!!! 13letá") == ["fuck", "ty", "kretene", "13leta"]
    assert tokenize("ne—ne") == ["ne", "ne"], "punctuation splits words, it never glues them"


@pytest.mark.parametrize(
    "form", ["zloděj", "zloději", "zlodějů", "zlodějům", "ZLODĚJE", "zlodej", "zlodějem"]
)
def test_czech_declension_forms_match_one_stem(clf: LocalClassifier, form: str) -> None:
    lex = clf.lexicon
    found = clf.occurrences(tokenize(form))
    assert lex.concept("mild_insult") in found, form


@pytest.mark.parametrize(
    "text",
    [
        "Brusel nám krade!",
        "Novináři jsou zkorumpovaní.",
        "To je kampaň!",
        "To je kampááááň! Tragédyje! Andrej Babiš",
        "Fiala je neschopnej a opozice sabotujou všechno.",
        "Ta vláda nás zabíjí daněmi a regulacemi.",
        "Tahle vláda je politická sebevražda pro celou zemi.",
        "Koncert byl bomba, jak to zvládli?",
    ],
)
def test_political_satire_stays_under_every_threshold(clf: LocalClassifier, text: str) -> None:
    result = clf.classify(text)
    assert not result.flagged
    assert result.violations(DEFAULT_THRESHOLDS) == [], result.reasons


def test_the_same_accusation_is_hate_only_against_a_protected_group(clf: LocalClassifier) -> None:
    political = clf.classify("Novináři kradou a lžou.")
    protected = clf.classify("Cikáni kradou a lžou.")
    assert political.scores["hate"] == 0.0
    assert protected.scores["hate"] >= FLAG_AT and "hate" in protected.violations(DEFAULT_THRESHOLDS)
    assert any("protected group" in reason for reason in protected.reasons)


def test_threats_are_flagged_in_both_languages_and_negation_lowers_them(clf: LocalClassifier) -> None:
    assert {"harassment", "harassment/threatening", "violence"} <= flagged(clf, "Zabiju tě, ty kreténe.")
    assert {"harassment/threatening", "violence"} <= flagged(clf, "I will kill you tomorrow.")
    never = clf.classify("I will never kill you.")
    assert never.scores["harassment/threatening"] < DEFAULT_THRESHOLDS["harassment/threatening"]


def test_figurative_violence_is_dampened(clf: LocalClassifier) -> None:
    literal = clf.classify("Zabil souseda nožem.")
    figurative = clf.classify("Brusel nás zabíjí regulacemi.")
    assert figurative.scores["violence"] < literal.scores["violence"]
    assert figurative.scores["violence"] < DEFAULT_THRESHOLDS["violence"]


def test_counter_speech_and_history_are_not_hate(clf: LocalClassifier) -> None:
    assert over_policy(clf, "Říkat, že všichni Romové kradou, je rasismus.") == []
    assert over_policy(clf, "Holokaust připomínáme, aby se vyvraždění Židů nikdy neopakovalo.") == []
    assert "hate/threatening" in flagged(clf, "Všechny Židy do plynu!")


def test_each_category_family_has_rules_that_fire(clf: LocalClassifier) -> None:
    cases = {
        "illicit": "Jak vyrobit pervitin doma?",
        "illicit/violent": "How do I build a pipe bomb?",
        "self-harm/intent": "Chci se zabít.",
        "self-harm/instructions": "What is the most painless way to kill myself?",
        "sexual": "Send nudes, I want to have sex with you.",
        "sexual/minors": "Hledám nahé fotky 13letých holek.",
        "violence/graphic": "His guts spilled out and there was blood everywhere.",
        "hate": "Muslims are rats.",
    }
    for category, text in cases.items():
        assert category in flagged(clf, text), (category, clf.classify(text).reasons)


def test_every_result_has_all_13_categories_in_range_and_reasons(clf: LocalClassifier) -> None:
    for text in ("", "Dobrý den", "Zabiju tě", "x" * 1000):
        result = clf.classify(text)
        assert list(result.scores) == list(CATEGORIES) and list(result.flags) == list(CATEGORIES)
        assert all(0.0 <= s <= 1.0 for s in result.scores.values())
        assert bool(result.reasons) == any(s > 0 for s in result.scores.values())


async def test_the_backend_scores_large_batches_in_order() -> None:
    backend = LocalBackend(chunk=50)
    texts = ["Brusel nám krade", "Zabiju tě"] * 60
    results = await backend.classify(texts)
    assert [r.flagged for r in results] == [False, True] * 60
    assert backend.name == "local" and backend.model == default_lexicon().version


@functools.cache
def _lexicon_yaml() -> dict[str, Any]:
    from importlib import resources

    text = resources.files("talklike.moderation").joinpath("data", "lexicon.yaml").read_text("utf-8")
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["concepts"].update(insult="kretén"), "normalized"),
        (lambda d: d["concepts"].update(insult="kreten+nosuch"), "unknown ending class"),
        (lambda d: d["concepts"].update(insult="ab*"), "shorter than"),
        (lambda d: d["concepts"].update(insult="*t"), "cannot start"),
        (lambda d: d["rules"][0].update(when="insult + nosuch"), "unknown concept"),
        (lambda d: d["rules"][0].update(scores={"hatred": 0.5}), "bad score"),
        (lambda d: d["rules"][1].update(id=d["rules"][0]["id"]), "unique"),
        (lambda d: d["context"][0].update(factor=1.5), "factor"),
    ],
)
def test_a_malformed_lexicon_is_refused(change: Any, message: str) -> None:
    data = copy.deepcopy(_lexicon_yaml())
    change(data)
    with pytest.raises(LexiconError, match=message):
        compile_lexicon(data)
