"""Release ids and alembic heads: pure, fast."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from smship.errors import SmshipError
from smship.release import alembic_heads, check_release_id, make_release_id

SHA = "ab12cd34ef567890ab12cd34ef567890ab12cd34"


def test_release_id_is_utc_time_and_short_sha():
    when = datetime(2026, 11, 25, 10, 30, 0, tzinfo=timezone(timedelta(hours=1)))
    assert make_release_id(SHA, dirty=False, now=when) == "20261125T093000Z-ab12cd3"
    assert make_release_id(SHA, dirty=True, now=when) == "20261125T093000Z-ab12cd3-dirty"


def test_release_ids_sort_by_build_time():
    early = make_release_id("f" * 40, dirty=False, now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    late = make_release_id("0" * 40, dirty=False, now=datetime(2026, 1, 2, 3, 4, 6, tzinfo=timezone.utc))
    assert sorted([late, early]) == [early, late]


@pytest.mark.parametrize("bad", ["", "../../etc", "20261125T093000Z-ab12cd3/x", "20261125T093000Z-XYZ1234",
                                 "20261125-ab12cd3", "20261125T093000Z-ab12cd3-clean"])
def test_malformed_release_ids_are_refused(bad):
    with pytest.raises(SmshipError, match="not a release id"):
        check_release_id(bad)


def write_revisions(app: Path, revisions: dict[str, str], location: str = "migrations/versions") -> None:
    versions = app / "host" / location
    versions.mkdir(parents=True, exist_ok=True)
    for name, body in revisions.items():
        (versions / f"{name}.py").write_text(body)


def rev(revision: str, down: str) -> str:
    return f'"""migration {revision}"""\nimport sqlalchemy as sa\nrevision = "{revision}"\ndown_revision = {down}\n' \
           "branch_labels = None\n\ndef upgrade():\n    pass\n"


def test_linear_history_has_one_head(tmp_path):
    write_revisions(tmp_path, {"a": rev("a", "None"), "b": rev("b", '"a"'), "c": rev("c", '"b"')})
    assert alembic_heads(tmp_path) == ["c"]


def test_branches_give_several_heads(tmp_path):
    write_revisions(tmp_path, {"a": rev("a", "None"), "b": rev("b", '"a"'), "c": rev("c", '"a"')})
    assert alembic_heads(tmp_path) == ["b", "c"]


def test_merge_revision_joins_branches(tmp_path):
    write_revisions(tmp_path, {"a": rev("a", "None"), "b": rev("b", '"a"'), "c": rev("c", '"a"'),
                               "m": rev("m", '("b", "c")')})
    assert alembic_heads(tmp_path) == ["m"]


def test_annotated_assignments_and_non_revision_files(tmp_path):
    write_revisions(tmp_path, {
        "a": 'revision: str = "a"\ndown_revision: str | None = None\n',
        "b": 'from typing import Union\nrevision: str = "b"\ndown_revision: Union[str, None] = "a"\n',
        "helpers": "def shared():\n    return 1\n",
    })
    assert alembic_heads(tmp_path) == ["b"]


def test_no_migrations_means_no_heads(tmp_path):
    assert alembic_heads(tmp_path) == []


def test_version_locations_from_alembic_ini(tmp_path):
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "alembic.ini").write_text(
        "[alembic]\nscript_location = %(here)s/db\nversion_locations = %(here)s/db/one %(here)s/db/two\n")
    write_revisions(tmp_path, {"a": rev("a", "None")}, "db/one")
    write_revisions(tmp_path, {"b": rev("b", '"a"')}, "db/two")
    write_revisions(tmp_path, {"z": rev("z", "None")}, "migrations/versions")   # not configured: ignored
    assert alembic_heads(tmp_path) == ["b"]


def test_unknown_down_revision_names_the_file(tmp_path):
    write_revisions(tmp_path, {"a": rev("a", "None"), "b": rev("b", '"nope"')})
    with pytest.raises(SmshipError, match=r"b\.py: down_revision 'nope' names no known revision"):
        alembic_heads(tmp_path)


def test_duplicate_revision_is_refused(tmp_path):
    write_revisions(tmp_path, {"a": rev("a", "None"), "a_again": rev("a", "None")})
    with pytest.raises(SmshipError, match="also defined"):
        alembic_heads(tmp_path)


def test_non_literal_revision_is_refused(tmp_path):
    write_revisions(tmp_path, {"a": 'import uuid\nrevision = uuid.uuid4().hex\ndown_revision = None\n'})
    with pytest.raises(SmshipError, match="revision must be a literal"):
        alembic_heads(tmp_path)


def test_old_builds_are_pruned_and_nothing_else(tmp_path):
    from smship.release.cachedir import prune_builds

    names = [f"2026110{d}T120000Z-abcdef{d}" for d in range(1, 8)]
    for name in names + ["wheels", ".tmp-x"]:
        (tmp_path / name).mkdir()
    assert prune_builds(tmp_path, keep=3) == names[:4]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[4:] + ["wheels", ".tmp-x"])
