"""Build rules: Docker Hub's matching and tag templates."""

from __future__ import annotations

import pytest

from dockyard.builds.rules import BRANCH, TAG, Rule, RuleError, default_rule


def test_literal_branch_rule() -> None:
    rule = default_rule("main")
    assert rule.tags_for(BRANCH, "main") == ["latest"]
    assert rule.tags_for(BRANCH, "develop") is None
    assert rule.tags_for(TAG, "main") is None


def test_regex_tag_rule_with_groups() -> None:
    rule = Rule(TAG, r"/^v([0-9.]+)$/", r"{\1}")
    assert rule.tags_for(TAG, "v1.2.3") == ["1.2.3"]
    assert rule.tags_for(TAG, "release-1") is None
    assert rule.tags_for(TAG, "v1.2.3-rc1") is None


def test_sourceref_and_several_tags() -> None:
    rule = Rule(BRANCH, "/^release-(.*)$/", "{sourceref}, stable-{\\1}, latest")
    assert rule.tags_for(BRANCH, "release-2024") == ["release-2024", "stable-2024", "latest"]


def test_refs_that_are_not_valid_tags_are_made_valid() -> None:
    rule = Rule(BRANCH, "/.*/", "{sourceref}")
    assert rule.tags_for(BRANCH, "feature/login") == ["feature-login"]
    assert rule.tags_for(BRANCH, ".hidden") == ["hidden"]


def test_missing_group_expands_to_nothing() -> None:
    rule = Rule(TAG, "/^v(.*)$/", "{\\2}x")
    assert rule.tags_for(TAG, "v1") == ["x"]


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (Rule("commit", "main", "latest"), "source type"),
        (Rule(BRANCH, "", "latest"), "source"),
        (Rule(BRANCH, "/(unclosed/", "latest"), "regex"),
        (Rule(BRANCH, "main", " , "), "Docker tag"),
        (Rule(BRANCH, "main", "latest", dockerfile="../../etc/passwd"), "inside"),
        (Rule(BRANCH, "main", "latest", context="a/../../b"), "inside"),
    ],
)
def test_invalid_rules(rule: Rule, problem: str) -> None:
    with pytest.raises(RuleError, match=problem):
        rule.check()
