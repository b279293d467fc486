import pytest

from actors.roster import Roster
from raychat.errors import Forbidden, Invalid, NotFound


def group():
    return Roster("group", ["o", "a1", "m1", "a2", "m2"], {"o": "owner", "a1": "admin", "a2": "admin"})


def test_owner_and_admin_add_members_but_members_do_not():
    r = group()
    assert r.check_add("o", ["x", "m1", "x"], limit=100) == ["x"]
    assert r.check_add("a1", ["y"], limit=100) == ["y"]
    with pytest.raises(Forbidden):
        r.check_add("m1", ["z"], limit=100)


def test_group_size_limit_is_enforced():
    with pytest.raises(Invalid):
        group().check_add("o", ["x", "y"], limit=6)


def test_admin_removes_members_only():
    r = group()
    assert r.check_remove("a1", "m1") == []
    with pytest.raises(Forbidden):
        r.check_remove("a1", "a2")
    with pytest.raises(Forbidden):
        r.check_remove("m1", "m2")


def test_anyone_may_leave():
    assert group().check_remove("m2", "m2") == []


def test_last_owner_leaving_promotes_the_oldest_admin():
    assert group().check_remove("o", "o") == [("a1", "owner")]


def test_last_owner_leaving_without_admins_promotes_the_oldest_member():
    r = Roster("group", ["o", "m1", "m2"], {"o": "owner"})
    assert r.check_remove("o", "o") == [("m1", "owner")]


def test_only_an_owner_changes_roles_and_transfer_demotes_the_old_owner():
    r = group()
    with pytest.raises(Forbidden):
        r.check_role("a1", "m1", "admin")
    assert r.check_role("o", "m1", "admin") == [("m1", "admin")]
    assert r.check_role("o", "m2", "owner") == [("m2", "owner"), ("o", "admin")]


def test_direct_conversations_never_change_members():
    r = Roster("direct", ["a", "b"], {})
    with pytest.raises(Invalid):
        r.check_add("a", ["c"], limit=100)
    with pytest.raises(Invalid):
        r.check_remove("a", "a")
    with pytest.raises(Invalid):
        r.check_rename("a")


def test_removing_a_stranger_is_not_found():
    with pytest.raises(NotFound):
        group().check_remove("o", "zz")


def test_apply_keeps_join_order():
    r = group()
    r.remove("o")
    r.add(["n"])
    r.set_role("a1", "owner")
    assert r.members == ["a1", "m1", "a2", "m2", "n"] and r.role("a1") == "owner"
