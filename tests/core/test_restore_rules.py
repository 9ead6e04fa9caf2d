"""core/restore_rules.py: a restore overwrites nothing that is not named, extracts files only into an
empty writable folder of its own, and knows one database under its several names."""

from __future__ import annotations

import pytest

from ubertruck_ops.core.restore_rules import (
    FolderFacts,
    RestoreRefused,
    check_confirmation,
    check_files_to,
    files_to_folder,
    server_identity,
)


def never_asked() -> bool:
    raise AssertionError("the target's server was asked although nothing depended on it")


def test_a_confirmation_naming_the_target_lets_it_be_overwritten_without_asking_its_server():
    check_confirmation("ubertruck_prod", "database ubertruck_prod on db:5432", "ubertruck_prod", True, never_asked)


def test_the_source_itself_is_refused_without_the_confirmation_and_its_server_is_not_asked():
    for confirm in (None, "", "ubertruck", "UBERTRUCK_PROD"):
        with pytest.raises(RestoreRefused, match="refusing to overwrite the source database ubertruck_prod on db:5432: "
                                                 "pass confirm='ubertruck_prod'"):
            check_confirmation("ubertruck_prod", "database ubertruck_prod on db:5432", confirm, True, never_asked)


def test_another_existing_database_is_refused_and_a_new_one_needs_no_confirmation():
    with pytest.raises(RestoreRefused, match="database staging on db:5432 exists: pass confirm='staging' to replace "
                                             r"it \(the current one is kept, renamed\)"):
        check_confirmation("staging", "database staging on db:5432", None, False, lambda: True)
    check_confirmation("staging", "database staging on db:5432", None, False, lambda: False)


def test_every_name_of_this_machine_is_one_server_and_host_names_ignore_case():
    assert server_identity("localhost", "5432", "app") == server_identity("127.0.0.1", "5432", "app") \
        == server_identity("::1", "5432", "app")
    assert server_identity("DB.example.com", "5432", "app") == server_identity("db.example.com", "5432", "app")
    assert server_identity("db", "5432", "app") != server_identity("db", "5433", "app")
    assert server_identity("db", "5432", "app") != server_identity("db", "5432", "App")
    assert server_identity("a,b", "5432", "app") != server_identity("b,a", "5432", "app")


def test_no_files_to_extracts_nothing_and_the_root_or_a_relative_folder_is_refused():
    assert files_to_folder(None) is None and files_to_folder("") is None
    for root in ("/", "//", "///"):
        with pytest.raises(RestoreRefused, match="files_to=/ would overwrite the host's files"):
            files_to_folder(root)
    with pytest.raises(ValueError, match="must be an absolute folder"):
        files_to_folder("restored/files")
    assert files_to_folder("/srv/restored/") == "/srv/restored/"


def test_files_go_only_into_an_empty_folder_or_a_new_one_under_a_writable_folder():
    check_files_to("/srv/new", "/srv/new", FolderFacts("/srv", is_dir=True, writable=True, empty=False))
    check_files_to("/srv/out", "/srv/out", FolderFacts("/srv/out", is_dir=True, writable=True, empty=True))
    with pytest.raises(ValueError, match="files_to '/srv/out' is not empty: give an empty or new folder"):
        check_files_to("/srv/out", "/srv/out", FolderFacts("/srv/out", is_dir=True, writable=True, empty=False))
    with pytest.raises(ValueError, match="files_to '/srv/file/x': /srv/file is not a folder"):
        check_files_to("/srv/file/x", "/srv/file/x", FolderFacts("/srv/file", is_dir=False, writable=False, empty=True))
    with pytest.raises(ValueError, match="files_to '/srv/x': /srv is not writable by this worker"):
        check_files_to("/srv/x", "/srv/x", FolderFacts("/srv", is_dir=True, writable=False, empty=True))
