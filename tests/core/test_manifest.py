"""core/manifest.py: backup ids, date folders, and manifests that parse or are refused clearly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ubertruck_ops.core.manifest import (
    Manifest,
    StoredObject,
    backup_folder,
    backup_id_of_key,
    new_backup_id,
    validate_backup_id,
)

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


def test_backup_ids_map_to_the_guides_date_folders_and_refuse_path_tricks():
    backup_id = new_backup_id(NOW, "logical", "a1b2c3d4")
    assert backup_id == "20261124T020000Z-logical-a1b2c3"
    assert backup_folder(backup_id) == "2026/11/24/20261124T020000Z-logical-a1b2c3"
    assert backup_id_of_key(f"2026/11/24/{backup_id}/manifest.json") == backup_id
    assert backup_id_of_key(f"2026/11/25/{backup_id}/manifest.json") is None
    for bad in ("../../etc/passwd", "", "20261124T020000Z-logical-a1b2c3/.."):
        with pytest.raises(ValueError, match="is not of the form"):
            validate_backup_id(bad)


def test_manifest_round_trips_and_rejects_unknown_formats():
    manifest = Manifest("20261124T020000Z-logical-a1b2c3", "logical", "2026-11-24T02:00:00+00:00",
                        "2026-11-24T02:05:00+00:00", {"name": "ubertruck_prod"}, {"pg_dump": "18"}, {"mode": "symmetric"},
                        [StoredObject("database.dump.zst.gpg", "database", 10, "0" * 64)], {"core.users": 3})
    assert Manifest.from_json(manifest.to_json()) == manifest
    with pytest.raises(ValueError, match="unsupported manifest format"):
        Manifest.from_json(manifest.to_json().replace(b'"format": 1', b'"format": 99'))


def test_a_backup_id_or_release_tag_with_a_trailing_newline_is_refused():
    from ubertruck_ops.core.releases import check_tag

    with pytest.raises(ValueError, match="is not of the form"):
        validate_backup_id("20261124T020000Z-logical-a1b2c3\n")
    assert backup_id_of_key("2026/11/24/20261124T020000Z-logical-a1b2c3\n/manifest.json") is None
    with pytest.raises(ValueError, match="is not a release tag"):
        check_tag("v1.10.0\n")
    assert check_tag("v1.10.0") == "v1.10.0"


def _manifest_json(**changes) -> bytes:
    import json

    manifest = Manifest("20261124T020000Z-logical-a1b2c3", "logical", "2026-11-24T02:00:00+00:00",
                        "2026-11-24T02:05:00+00:00", {"name": "ubertruck_prod"}, {}, {},
                        [StoredObject("database.dump.zst.gpg", "database", 10, "0" * 64)])
    raw = json.loads(manifest.to_json())
    raw.update(changes)
    return json.dumps(raw).encode()


def test_a_manifest_that_is_not_an_object_or_is_truncated_or_from_a_newer_release_is_a_value_error():
    for data, message in [(b"[1, 2]", "a JSON list, not an object"), (b'"text"', "a JSON str"),
                          (_manifest_json()[:40], "not JSON"), (b"\xff\xfe", "not JSON"),
                          (_manifest_json(format=2), "written by a newer release"),
                          (_manifest_json(format="1"), "unsupported manifest format '1'"),
                          (_manifest_json(finished_at="yesterday"), "not an ISO 8601 time"),
                          (_manifest_json(backup_id="../../etc"), "is not of the form"),
                          (_manifest_json(objects={"a": 1}), "objects is not a list"),
                          (_manifest_json(kind=None), "kind is not a string")]:
        with pytest.raises(ValueError, match=message):
            Manifest.from_json(data)


def test_unknown_keys_in_a_manifest_of_our_format_are_ignored():
    import json

    raw = json.loads(_manifest_json(added_later={"x": 1}))
    raw["objects"][0]["storage_class"] = "GLACIER"
    manifest = Manifest.from_json(json.dumps(raw).encode())
    assert manifest.backup_id == "20261124T020000Z-logical-a1b2c3" and manifest.objects[0].size == 10


def _ran(backup_id: str, started: str, finished: str) -> Manifest:
    return Manifest(backup_id, "logical", f"2026-11-24T02:00:{started}+00:00", f"2026-11-24T02:00:{finished}+00:00",
                    {}, {}, {})


def test_two_short_backups_finishing_in_the_same_second_keep_the_order_they_ran_in():
    # Times are whole seconds: a 0.4 s backup at 02:00:49.7 and the next at 02:00:50.5 both
    # finish at 02:00:50; by finish time alone they would tie and either could be "the newest".
    first, second = _ran("20261124T020049Z-logical-ffffff", "49", "50"), _ran("20261124T020050Z-logical-000000", "50", "50")
    assert sorted([second, first], key=lambda m: m.run_order) == [first, second]
    assert first.run_order < second.run_order


def test_row_count_keys_of_tables_whose_names_hold_dots_never_collide():
    from ubertruck_ops.core.manifest import DOTTED, row_count_key

    assert row_count_key("a.b", "c") == '"a.b".c' and row_count_key("a", "b.c") == 'a."b.c"'
    assert row_count_key("a.b", "c", DOTTED) == row_count_key("a", "b.c", DOTTED) == "a.b.c"   # the old collision
    assert row_count_key("core", "users") == "core.users"            # plain names read as they always did
    assert row_count_key("Sales", 'odd"name') == '"Sales"."odd""name"'


def test_a_manifest_written_before_row_count_keys_existed_reads_as_dotted_and_an_unknown_style_is_refused():
    import json

    import pytest

    from ubertruck_ops.core.manifest import DOTTED, QUOTED, Manifest

    current = Manifest(backup_id="20261124T020000Z-logical-abcdef", kind="logical", started_at="2026-11-24T02:00:00+00:00",
                       finished_at="2026-11-24T02:05:00+00:00", database={}, tools={}, encryption={},
                       row_counts={'"a.b".c': 1}, row_count_keys=QUOTED)
    raw = json.loads(current.to_json())
    assert Manifest.from_json(current.to_json()).row_count_keys == QUOTED
    old = {k: v for k, v in raw.items() if k != "row_count_keys"}
    assert Manifest.from_json(json.dumps(old).encode()).row_count_keys == DOTTED
    with pytest.raises(ValueError, match="row_count_keys 'bracketed' is not one this release knows"):
        Manifest.from_json(json.dumps({**raw, "row_count_keys": "bracketed"}).encode())
