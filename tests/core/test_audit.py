"""The dependency audit's verdict: what stops a release, what is only a warning."""

from __future__ import annotations

import pytest

from ubertruck_ops.core.audit import audit_verdict, check_level


def report(**counts) -> dict:
    vulnerable = {"ms": {"via": [{"title": "ReDoS in ms", "severity": "high"}]}} if counts else {}
    return {"auditReportVersion": 2, "vulnerabilities": vulnerable,
            "metadata": {"vulnerabilities": {**counts, "total": sum(counts.values())}}}


def test_a_vulnerability_at_or_over_the_level_stops_the_release_and_is_named():
    verdict = audit_verdict("user-service", report(high=1), "high")
    assert verdict.kind == "failed" and "1 high" in verdict.text and "ReDoS in ms" in verdict.text
    assert audit_verdict("user-service", report(high=1), "moderate").kind == "failed"


def test_vulnerabilities_below_the_level_pass_and_are_counted():
    verdict = audit_verdict("user-service", report(low=2, moderate=1), "high")
    assert verdict.kind == "passed" and "3 below it" in verdict.text
    assert audit_verdict("user-service", report(), "high").kind == "passed"


def test_a_registry_that_refuses_audits_or_cannot_be_reached_is_a_warning_not_a_failure():
    refused = {"message": "405 Method Not Allowed - POST /-/npm/v1/security/advisories/bulk", "statusCode": 405,
               "error": {"summary": "", "detail": ""}}
    verdict = audit_verdict("user-service", refused, "high")
    assert verdict.kind == "unavailable" and "405" in verdict.text and "not a failure" in verdict.text
    assert audit_verdict("user-service", None, "high", "npm error something").kind == "unavailable"


def test_an_unknown_level_is_refused_naming_the_levels():
    with pytest.raises(ValueError, match="info, low, moderate, high, critical"):
        check_level("severe")
