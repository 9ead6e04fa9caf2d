"""Database names cut by bytes as PostgreSQL counts them (NAMEDATALEN 63), never equal to the target."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ubertruck_ops.core import names


def test_names_are_cut_by_utf8_bytes_on_a_character_boundary():
    assert names.truncate_bytes("ü" * 40, 63) == "ü" * 31
    assert names.truncate_bytes("abc", 63) == "abc"
    assert names.truncate_bytes("aü", 2) == "a"


@pytest.mark.parametrize("target", ["ü" * 31, "a" * 63, "ü" * 30 + "a", "ubertruck_prod", "日本語のデータベース名" * 2,
                                    "x_restoring_abcd1234", "x" * 40 + "_before_20260101000000"])
def test_staging_and_kept_names_fit_in_63_bytes_and_never_equal_the_target_or_each_other(target):
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    staging = names.staging_name(target, "abcd1234")
    kept = names.kept_name(target, moment, avoid=(staging,))
    assert len(staging.encode()) <= 63 and len(kept.encode()) <= 63
    assert len({target, staging, kept}) == 3
    assert names.staging_name(target, "ffff0000") != staging       # one name per run
    assert names.kept_name(target, moment, 1) != kept


@pytest.mark.parametrize("name, port", [("user-service", 3001), ("svc2", 1), ("a", 65535)])
def test_plain_service_names_and_ports_pass(name, port):
    assert names.service_problem(name, port) is None


@pytest.mark.parametrize("name, port, said", [
    ("../../etc", 3001, "lowercase letters, digits and dashes"), ("/tmp/x", 3001, "lowercase letters"),
    ("-rf", 3001, "starting with a letter or digit"), ("User_Service", 3001, "lowercase letters"),
    ("a" * 64, 3001, "lowercase letters"), ("user-service", 0, "from 1 to 65535"),
    ("user-service", 65536, "from 1 to 65535"), ("user-service", True, "from 1 to 65535")])
def test_service_names_that_could_become_paths_or_options_and_ports_out_of_range_are_refused(name, port, said):
    assert said in names.service_problem(name, port)
