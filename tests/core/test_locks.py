"""core/locks.py: the next run gives back only a slot that the API it talks to counted for the dead
holder; never one by name that a live run elsewhere may hold."""

from __future__ import annotations

from ubertruck_ops.core.locks import GIVE_BACK_BY_NAME, NOTHING, RELEASE_LEASE, stale_lease_action

API = "http://prefect.internal:4200/api"
NOW = 1_800_000_000.0


def record(**changes) -> dict:
    base = {"lease_id": "6b1f0c52-3d4e-4b8e-9a51-0c1d2e3f4a5b", "holder": "nightly backup of prod", "pid": 4242,
            "api": API, "private_api": False, "since": NOW - 100, "until": NOW + 250}
    return {**base, **changes}


def test_a_lease_the_api_still_knows_is_released_with_its_slot():
    assert stale_lease_action(record(), API, lease_known=True, slots_taken=1, now=NOW).action == RELEASE_LEASE
    # also one a private API granted, when this API shares its leases on disk (same PREFECT_HOME)
    private = record(api="http://127.0.0.1:40123/api", private_api=True)
    assert stale_lease_action(private, "http://127.0.0.1:40999/api", True, 1, now=NOW).action == RELEASE_LEASE


def test_a_private_apis_lease_unknown_here_never_gives_back_a_slot_by_name_even_with_one_taken():
    stale = record(api="http://127.0.0.1:40123/api", private_api=True)
    decision = stale_lease_action(stale, API, lease_known=False, slots_taken=1, now=NOW)
    assert decision.action == NOTHING
    assert "private API" in decision.why and "never" in decision.why


def test_a_lease_granted_by_another_api_never_gives_back_a_slot_here():
    stale = record(api="http://old-server:4200/api")
    decision = stale_lease_action(stale, API, lease_known=False, slots_taken=1, now=NOW)
    assert decision.action == NOTHING and "old-server" in decision.why


def test_this_apis_own_unexpired_lease_that_it_lost_gives_back_its_one_slot_by_name():
    decision = stale_lease_action(record(), API + "/", lease_known=False, slots_taken=1, now=NOW)
    assert decision.action == GIVE_BACK_BY_NAME and "restarted" in decision.why


def test_an_expired_or_nearly_expired_lease_is_left_to_the_servers_reaper():
    for until in (NOW - 5, NOW + 10):      # 10 s ahead: a server clock ahead of ours may have reaped it
        assert stale_lease_action(record(until=until), API, False, 1, now=NOW).action == NOTHING


def test_nothing_is_given_back_when_no_slot_is_taken_or_the_holder_was_releasing():
    assert stale_lease_action(record(), API, False, 0, now=NOW).action == NOTHING
    assert stale_lease_action(record(), API, False, None, now=NOW).action == NOTHING
    assert stale_lease_action(record(releasing=True), API, False, 1, now=NOW).action == NOTHING


def test_a_failed_renewal_loses_the_slot_only_when_the_api_forgot_the_lease_or_it_ran_out():
    from ubertruck_ops.core.locks import lease_lost

    assert lease_lost(404, until=1000.0, now=900.0) and lease_lost(410, until=1000.0, now=900.0)
    assert lease_lost(None, until=1000.0, now=1000.5)        # no answer until it expired
    assert not lease_lost(None, until=1000.0, now=900.0)     # a dropped connection: retried
    assert not lease_lost(503, until=1000.0, now=900.0)      # a server in trouble: retried
