from collections import Counter

from actors.membership import host_name
from actors.placement import group_by_owner, not_owned, owner


def names(count: int, node: str = "n1") -> list[str]:
    return [host_name(node, i) for i in range(count)]


def test_owner_is_stable_and_the_same_in_every_process():
    hosts = names(4)
    # A literal expectation: blake2b is not salted per process, unlike hash().
    assert owner(("conv", "c1"), hosts) == owner(("conv", "c1"), list(reversed(hosts)))
    assert owner(("conv", "c1"), hosts) in hosts


def test_keys_spread_over_hosts():
    hosts = names(4)
    counts = Counter(owner(("user", f"u{i}"), hosts) for i in range(4000))
    assert set(counts) == set(hosts)
    assert min(counts.values()) > 800


def test_adding_a_host_moves_only_the_keys_it_wins():
    before = names(4)
    after = before + [host_name("n2", 0)]
    keys = [("conv", f"c{i}") for i in range(2000)]
    moved = [k for k in keys if owner(k, before) != owner(k, after)]
    assert all(owner(k, after) == host_name("n2", 0) for k in moved)
    assert 250 < len(moved) < 600


def test_removing_a_node_moves_only_the_keys_its_hosts_held():
    """A node leaving takes its two hosts' keys to the others; no other key moves."""
    before = names(2, "n1") + names(2, "n2") + names(2, "n3")
    gone = set(names(2, "n2"))
    after = [h for h in before if h not in gone]
    keys = [("user", f"u{i}") for i in range(3000)]
    moved = [k for k in keys if owner(k, before) != owner(k, after)]
    assert moved and all(owner(k, before) in gone for k in moved)
    assert len(moved) == sum(1 for k in keys if owner(k, before) in gone)


def test_not_owned_names_the_keys_that_moved_away():
    before = names(3)
    after = before + names(2, "n2")
    keys = [("conv", f"c{i}") for i in range(500)]
    me = before[0]
    held = [k for k in keys if owner(k, before) == me]
    leaving = not_owned(held, me, after)
    assert leaving == [k for k in held if owner(k, after) != me]
    assert 0 < len(leaving) < len(held)
    assert not_owned(held, me, []) == held        # an empty view owns nothing


def test_group_by_owner_covers_every_id_once():
    hosts = names(3)
    ids = [f"u{i}" for i in range(100)]
    groups = group_by_owner("user", ids, hosts)
    assert sorted(i for g in groups.values() for i in g) == sorted(ids)


def test_cached_owner_agrees_with_owner_and_follows_the_host_list():
    from actors.placement import cached_owner, owner

    keys = [("user", f"u{n}") for n in range(200)]
    for hosts in (["h1", "h2"], ["h1", "h2", "h3"], ["h3"]):
        assert [cached_owner(k, hosts) for k in keys] == [owner(k, hosts) for k in keys]
        assert [cached_owner(k, hosts) for k in keys] == [owner(k, hosts) for k in keys]
