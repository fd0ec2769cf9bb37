"""Thresholds, policy fields, the pre-flight verdict, and the shipped labelled set."""

from __future__ import annotations

import json
import math

import pytest
from talklike.cli.moderation import _markdown
from talklike.common.errors import InvalidArgument
from talklike.moderation.categories import CATEGORIES, DEFAULT_THRESHOLDS, FLAG_AT, Scores, check_thresholds
from talklike.moderation.core import BackendEvaluation
from talklike.moderation.evaluation import evaluate, load_set, parse_set, select
from talklike.moderation.local import LocalClassifier
from talklike.moderation.policy import LIKELY_BLOCKED, PASS, make_policy, preflight
from talklike.moderation.servicer import evaluation_pb


def test_the_categories_are_openais_thirteen_and_the_defaults_are_stricter_than_flagged() -> None:
    assert (
        len(CATEGORIES) == 13 and "self-harm/instructions" in CATEGORIES and "illicit/violent" in CATEGORIES
    )
    assert set(DEFAULT_THRESHOLDS) == set(CATEGORIES)
    assert all(0 < value < FLAG_AT for value in DEFAULT_THRESHOLDS.values())


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        ({"hatred": 0.2}, 'policy.thresholds["hatred"]', "unknown category"),
        ({"hate": 1.5}, 'policy.thresholds["hate"]', "between 0 and 1"),
        ({"hate": -0.1}, 'policy.thresholds["hate"]', "between 0 and 1"),
        ({"sexual": math.nan}, 'policy.thresholds["sexual"]', "between 0 and 1"),
    ],
)
def test_bad_thresholds_name_the_entry(raw: dict[str, float], field: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_thresholds(raw, "policy.thresholds")
    assert caught.value.field == field and reason in caught.value.reason


def test_thresholds_merge_over_the_defaults() -> None:
    merged = check_thresholds({"hate": 0.05, "violence": 1})
    assert (
        merged["hate"] == 0.05
        and merged["violence"] == 1.0
        and merged["sexual"] == DEFAULT_THRESHOLDS["sexual"]
    )


def test_policy_fields_are_checked_and_defaulted() -> None:
    policy = make_policy({}, [], "", None, 0.02)
    assert policy.roles == ("system", "user", "assistant") and policy.action == "drop"
    assert policy.flagged_share_limit == 0.02
    only = make_policy({}, ["assistant", "user", "assistant"], "annotate", 0.0, 0.02)
    assert (
        only.roles == ("user", "assistant") and only.action == "annotate" and only.flagged_share_limit == 0.0
    )
    for kwargs, field in (
        ({"roles": ["robot"]}, "policy.roles[0]"),
        ({"action": "delete"}, "policy.action"),
        ({"limit": 2.0}, "policy.flagged_share_limit"),
        ({"limit": math.inf}, "policy.flagged_share_limit"),
    ):
        with pytest.raises(InvalidArgument) as caught:
            make_policy({}, kwargs.get("roles", []), kwargs.get("action", "drop"), kwargs.get("limit"), 0.01)
        assert caught.value.field == field


def test_preflight_verdicts_and_advice() -> None:
    drop = make_policy({}, [], "drop", 0.01, 0.01)
    blocked = preflight(1000, 50, drop, output=False, kept_flagged=0, out_name="moderated.jsonl")
    assert blocked.verdict == LIKELY_BLOCKED and "upload moderated.jsonl instead" in blocked.advice
    assert "5.0%" in blocked.advice and "1.0%" in blocked.advice
    assert preflight(1000, 10, drop, output=False, kept_flagged=0, out_name="m").verdict == PASS, (
        "at the limit passes"
    )
    clean = preflight(950, 0, drop, output=True, kept_flagged=0, out_name="moderated.jsonl")
    assert clean.verdict == PASS and "ready to upload" in clean.advice
    annotate = make_policy({}, ["assistant"], "annotate", 0.01, 0.01)
    kept = preflight(100, 20, annotate, output=True, kept_flagged=20, out_name="moderated.jsonl")
    assert (
        kept.verdict == LIKELY_BLOCKED
        and "--action drop" in kept.advice
        and "OpenAI checks every turn" in kept.advice
    )
    assert preflight(0, 0, drop, output=False, kept_flagged=0, out_name="m").share == 0.0


def test_the_shipped_set_is_large_bilingual_and_covers_every_category() -> None:
    texts = load_set()
    assert len(texts) >= 200
    assert {t.lang for t in texts} == {"cs", "en"} and {t.split for t in texts} == {"dev", "test"}
    assert {t.kind for t in texts} == {"harmful", "benign", "hard-negative", "satire"}
    assert sum(1 for t in texts if t.kind == "satire") >= 40
    covered = {c for t in texts for c in t.categories}
    assert covered == set(CATEGORIES)
    assert len(select(texts, "test", "cs")) + len(select(texts, "test", "en")) == len(select(texts, "test"))


def test_a_malformed_set_line_is_named() -> None:
    good = {"id": "a", "text": "x", "lang": "en", "kind": "benign", "split": "dev", "categories": []}
    assert len(parse_set([json.dumps(good)], "s")) == 1
    for bad, reason in (
        ({**good, "categories": ["hate"]}, "harmful texts have categories"),
        ({**good, "kind": "harmful", "categories": ["hatred"]}, "unknown categories"),
        ({**good, "lang": "de"}, "kind, lang or split"),
    ):
        with pytest.raises(InvalidArgument, match=reason):
            parse_set([json.dumps(bad)], "s")
    with pytest.raises(InvalidArgument, match="s:2"):
        parse_set([json.dumps(good), "{nope"], "s")
    with pytest.raises(InvalidArgument, match="duplicate id"):
        parse_set([json.dumps(good), json.dumps(good)], "s")


def test_evaluate_counts_precision_and_recall() -> None:
    texts = parse_set(
        [
            json.dumps({"id": str(i), "text": t, "lang": "en", "kind": k, "categories": c})
            for i, (t, k, c) in enumerate(
                [
                    ("a", "harmful", ["hate"]),
                    ("b", "harmful", ["hate"]),
                    ("c", "benign", []),
                    ("d", "satire", []),
                ]
            )
        ],
        "t",
    )
    flags = [{"hate": True}, {}, {"hate": True}, {}]
    scores = [
        Scores.of({"hate": 0.9}).scores,
        Scores.of({"hate": 0.1}).scores,
        Scores.of({"hate": 0.6}).scores,
        {},
    ]
    report = evaluate(texts, flags, scores)
    hate = report.per_category["hate"]
    assert (hate.tp, hate.fp, hate.fn, hate.tn) == (1, 1, 1, 1)
    assert hate.precision == 0.5 and hate.recall == 0.5
    assert report.per_category["sexual"].precision is None, "nothing predicted: undefined, not 0"
    assert report.false_alarms_by_kind == {"benign": 1, "hard-negative": 0, "satire": 0}
    reply = evaluation_pb(BackendEvaluation("local", "lexicon", report))
    assert "| hate | 2 | 50% | 50% | 1 |" in _markdown(
        [*reply.categories, reply.any_flagged, reply.any_policy]
    )
    assert [e.id for e in report.errors] == ["1", "2"] == [m.id for m in reply.misses]


def test_the_local_backend_meets_its_floor_on_the_shipped_set() -> None:
    """A regression floor, not a claim: dev is what the lexicon was tuned on, test was not tuned on."""
    clf = LocalClassifier()
    texts = load_set()
    results = [clf.classify(t.text) for t in texts]
    by_split = {}
    for split in ("dev", "test"):
        chosen = [(t, r) for t, r in zip(texts, results, strict=True) if t.split == split]
        by_split[split] = evaluate(
            [t for t, _ in chosen], [r.flags for _, r in chosen], [r.scores for _, r in chosen]
        )
    dev, test = by_split["dev"], by_split["test"]
    assert dev.any_flagged.precision is not None and dev.any_flagged.precision >= 0.95
    assert dev.any_flagged.recall is not None and dev.any_flagged.recall >= 0.9
    assert test.any_flagged.precision is not None and test.any_flagged.precision >= 0.9
    assert test.any_flagged.recall is not None and test.any_flagged.recall >= 0.55
    assert dev.false_alarms_by_kind["satire"] == 0 and test.false_alarms_by_kind["satire"] == 0
