"""Flows call other flows by name (operations/subflows.py), never by importing their modules."""

from __future__ import annotations

import pytest

from ubertruck_ops.deployments.registry import get_flow
from ubertruck_ops.operations.subflows import SUBFLOWS, subflow


@pytest.mark.parametrize("name", sorted(SUBFLOWS))
def test_a_subflow_is_the_very_flow_the_registry_serves_under_its_name(name):
    assert subflow(name) is get_flow(name)
    assert subflow(name).name == name


def test_a_flow_no_flow_calls_is_refused_by_name():
    with pytest.raises(ValueError, match="'deploy' is not a subflow; known: nightly-backup, restore-drill"):
        subflow("deploy")
