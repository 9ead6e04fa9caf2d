"""The services' configuration: names, what each process gets, which version a switch runs."""

from __future__ import annotations

from ubertruck_ops.core.app_config import (
    config_label,
    config_problems,
    service_environment,
    version_for,
    versions_to_prune,
)


def test_a_configuration_is_refused_by_name_never_by_value():
    problems = config_problems({"GOOD_NAME": "x", "BAD-NAME": "s3cret", "1ST": "y", "NESTED": {"a": 1},
                                "NUL": "a\0b", "EMPTY": "", "FLAG": True, "NUMBER": 3})
    assert len(problems) == 4, problems
    assert not any("s3cret" in p for p in problems)
    assert any("BAD-NAME" in p for p in problems) and any("'1ST'" in p for p in problems)


def test_every_service_gets_every_variable_with_its_own_port_and_the_deploys_node_env():
    env = service_environment({"DATABASE_URL": "postgresql://x", "PORT": "3001", "NODE_ENV": "development"},
                              3004, "v1.2.0")
    assert env == {"DATABASE_URL": "postgresql://x", "PORT": "3004", "NODE_ENV": "production",
                   "UBERTRUCK_RELEASE": "v1.2.0"}


def test_an_equal_configuration_reuses_its_version_and_a_changed_one_gets_the_next():
    kept = {1: {"A": "1"}, 2: {"A": "2"}}
    assert version_for({"A": "2"}, kept) == (2, False)
    assert version_for({"A": "1"}, kept) == (1, False)       # back to an older one: no new copy
    assert version_for({"A": "3"}, kept) == (3, True)
    assert version_for({}, {}) == (0, False)                  # nothing configured yet: names as before
    assert version_for({"A": "1"}, {}) == (1, True)
    assert version_for({"A": "1"}, {}, frozenset({1})) == (2, True)     # a damaged version 1 is not overwritten


def test_pruning_keeps_the_newest_and_every_version_a_switch_may_return_to():
    assert versions_to_prune([1, 2, 3, 4, 5, 6], keep={1}, newest=2) == [2, 3, 4]
    assert versions_to_prune([0, 1], keep=set(), newest=0) == [1]
    assert config_label(0) == "no configuration" and config_label(3) == "configuration 3"
