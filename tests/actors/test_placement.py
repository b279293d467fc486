from collections import Counter

from actors.placement import group_by_owner, host_names, owner


def test_owner_is_stable_and_the_same_in_every_process():
    hosts = host_names(4)
    # A literal expectation: blake2b is not salted per process, unlike hash().
    assert owner(("conv", "c1"), hosts) == owner(("conv", "c1"), list(reversed(hosts)))
    assert owner(("conv", "c1"), hosts) in hosts


def test_keys_spread_over_hosts():
    hosts = host_names(4)
    counts = Counter(owner(("user", f"u{i}"), hosts) for i in range(4000))
    assert set(counts) == set(hosts)
    assert min(counts.values()) > 800


def test_adding_a_host_moves_only_the_keys_it_wins():
    before, after = host_names(4), host_names(5)
    keys = [("conv", f"c{i}") for i in range(2000)]
    moved = [k for k in keys if owner(k, before) != owner(k, after)]
    assert all(owner(k, after) == "raychat-host-4" for k in moved)
    assert 250 < len(moved) < 600


def test_group_by_owner_covers_every_id_once():
    hosts = host_names(3)
    ids = [f"u{i}" for i in range(100)]
    groups = group_by_owner("user", ids, hosts)
    assert sorted(i for g in groups.values() for i in g) == sorted(ids)
