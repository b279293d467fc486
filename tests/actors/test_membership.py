"""The reconcile decision: which hosts to start, drop or start again, given the nodes."""

from actors.membership import (HOSTS_RESOURCE, MAX_HOSTS_PER_NODE, IdleNodes, View, desired_hosts, host_name,
                               hosts_on, in_use, is_host_name, next_version, plan)

FAKE_HEAD = "f" * 51 + "00000"     # the fake multi-node provider's ids differ only at the end
FAKE_WORKER = "f" * 51 + "00001"


def test_host_names_are_deterministic_and_differ_for_ids_with_a_common_prefix():
    assert host_name(FAKE_HEAD, 0) == host_name(FAKE_HEAD, 0)
    assert host_name(FAKE_HEAD, 0) != host_name(FAKE_WORKER, 0)
    assert host_name(FAKE_HEAD, 0) != host_name(FAKE_HEAD, 1)
    assert is_host_name(host_name(FAKE_HEAD, 3)) and not is_host_name("raychat-directory")


def test_a_node_gets_its_advertised_count_else_the_setting():
    assert hosts_on({"CPU": 4.0}, 2) == 2
    assert hosts_on({"CPU": 4.0, HOSTS_RESOURCE: 5.0}, 2) == 5
    assert hosts_on({HOSTS_RESOURCE: 10_000.0}, 2) == MAX_HOSTS_PER_NODE


def test_desired_hosts_name_each_slot_of_each_node():
    want = desired_hosts({"a": 2, "b": 1})
    assert want == {host_name("a", 0): "a", host_name("a", 1): "a", host_name("b", 0): "b"}


def test_a_new_cluster_starts_every_slot():
    p = plan({"a": 2}, members=[], starting=[], existing=[])
    assert p.start == tuple(sorted((host_name("a", i), "a") for i in range(2)))
    assert p.drop == () and p.revive == ()


def test_a_node_that_joins_gets_its_hosts_and_nobody_else_moves():
    members = [host_name("a", 0), host_name("a", 1)]
    p = plan({"a": 2, "b": 3}, members=members, starting=[], existing=members)
    assert {n for n, _ in p.start} == {host_name("b", i) for i in range(3)}
    assert all(node == "b" for _, node in p.start)
    assert p.drop == () and p.revive == ()


def test_a_node_that_leaves_has_its_hosts_dropped():
    members = [host_name("a", 0), host_name("b", 0), host_name("b", 1)]
    p = plan({"a": 1}, members=members, starting=[], existing=members)
    assert p.drop == tuple(sorted([host_name("b", 0), host_name("b", 1)]))
    assert p.start == () and p.revive == ()


def test_hosts_being_started_are_neither_started_again_nor_dropped():
    starting = [host_name("b", 0)]
    p = plan({"a": 1, "b": 1}, members=[host_name("a", 0)], starting=starting, existing=[host_name("a", 0)])
    assert p.start == () and p.drop == () and p.revive == ()


def test_a_lowered_count_drops_the_highest_slots():
    members = [host_name("a", i) for i in range(3)]
    p = plan({"a": 1}, members=members, starting=[], existing=members)
    assert set(p.drop) == {host_name("a", 1), host_name("a", 2)}


def test_a_restarted_directory_adopts_the_hosts_it_finds_and_drops_strays():
    """Nothing is a member after a restart: existing hosts of alive nodes are started again
    (which finds them by name), hosts of nodes that left are dropped."""
    existing = [host_name("a", 0), host_name("gone", 0)]
    p = plan({"a": 1}, members=[], starting=[], existing=existing)
    assert p.start == ((host_name("a", 0), "a"),)
    assert p.drop == (host_name("gone", 0),)


def test_a_member_ray_forgot_is_started_again_in_place():
    members = [host_name("a", 0), host_name("a", 1)]
    p = plan({"a": 2}, members=members, starting=[], existing=[host_name("a", 0)])
    assert p.revive == ((host_name("a", 1), "a"),)
    assert p.start == () and p.drop == ()


def test_versions_only_grow_even_when_the_clock_does_not():
    assert next_version(0, 1_800_000_000.0) == 1_800_000_000_000
    assert next_version(1_800_000_000_000, 1_800_000_000.0) == 1_800_000_000_001
    assert next_version(5, 1.0) == 1000
    # A restarted directory starts from 0 and still outnumbers the versions it published.
    assert next_version(0, 1_800_000_001.0) > next_version(1_800_000_000_000, 1_800_000_000.5)


def test_a_view_crosses_processes_as_a_plain_dict():
    v = View(7, ("h1", "h2"))
    assert View.from_dict(v.to_dict()) == v and v.to_dict() == {"version": 7, "hosts": ["h1", "h2"]}


def test_reserved_cpus_gpus_and_custom_resources_are_use_memory_and_markers_are_not():
    total = {"CPU": 2.0, "memory": 1e9, "object_store_memory": 1e8, "node:127.0.0.1": 1.0, HOSTS_RESOURCE: 2.0}
    assert not in_use(total, total)
    assert not in_use(total, {**total, "memory": 0.0, "object_store_memory": 1.0, "node:127.0.0.1": 0.0})
    assert in_use(total, {**total, "CPU": 1.0})
    assert in_use({"CPU": 1.0, "raychat_gateway": 1.0}, {"CPU": 1.0, "raychat_gateway": 0.99})
    assert in_use({"CPU": 1.0}, {})          # Ray omits a resource that is fully taken


def test_without_a_release_time_every_node_keeps_its_hosts():
    idle = IdleNodes(None)
    assert idle.keeps_hosts("w", head=False, used=False, now=0.0)
    assert idle.keeps_hosts("w", head=False, used=False, now=1e6)


def test_a_worker_that_only_runs_hosts_lets_them_go_after_the_release_time():
    idle = IdleNodes(30.0)
    assert idle.keeps_hosts("w", head=False, used=False, now=100.0)      # just seen: it gets hosts
    assert idle.keeps_hosts("w", head=False, used=False, now=129.0)
    assert not idle.keeps_hosts("w", head=False, used=False, now=130.0)
    assert idle.keeps_hosts("w", head=False, used=True, now=131.0)       # used again: hosts come back
    assert idle.keeps_hosts("w", head=False, used=False, now=160.5)
    assert not idle.keeps_hosts("w", head=False, used=False, now=161.0)


def test_the_head_keeps_its_hosts_however_idle():
    idle = IdleNodes(1.0)
    assert idle.keeps_hosts("h", head=True, used=False, now=0.0)
    assert idle.keeps_hosts("h", head=True, used=False, now=1e6)


def test_a_node_that_left_is_forgotten():
    idle = IdleNodes(5.0)
    idle.keeps_hosts("w", head=False, used=False, now=0.0)
    idle.forget_all_but(["other"])
    assert idle.keeps_hosts("w", head=False, used=False, now=100.0)      # seen afresh
