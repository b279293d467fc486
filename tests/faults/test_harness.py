"""The fault harness's verdict (tests/faults/harness.py ``judge``): each check fails when it should."""

from __future__ import annotations

from tests.faults.harness import Cycle, judge


def ev(seq: int, cmid: str, kind: str = "message") -> dict:
    return {"seq": seq, "client_msg_id": cmid, "kind": kind}


def verdict(stored=None, sent=None, acked=None, received=None, cycles=None, **kw):
    stored = stored if stored is not None else {"c": [ev(1, "a"), ev(2, "b")]}
    sent = sent if sent is not None else {"a": "c", "b": "c"}
    acked = acked if acked is not None else {"a": ("c", 1), "b": ("c", 2)}
    received = received if received is not None else {"x": ("c", list(stored["c"])), "y": ("c", list(stored["c"]))}
    cycles = cycles if cycles is not None else [Cycle(0.0, 1.0, 0.5, 2.0)]
    return judge("t", stored=stored, sent=sent, acked=acked, received=received, retried=3, cycles=cycles,
                 clients=2, **kw)


def test_a_clean_run_passes_and_its_line_has_the_counts():
    r = verdict()
    assert r.ok, r.problems
    assert r.line().startswith("fault=t sent=2 acked=2 retried=3 lost=0 duplicates=0 first_ack_after_clear=0.50s")


def test_an_acked_send_missing_from_the_store_is_lost():
    r = verdict(stored={"c": [ev(1, "a")]}, received={"x": ("c", [ev(1, "a")])})
    assert r.lost == 1 and not r.ok


def test_an_ack_naming_another_seq_than_the_store_is_lost():
    r = verdict(acked={"a": ("c", 1), "b": ("c", 1)})
    assert r.lost == 1 and any("the store has it at 2" in p for p in r.problems)


def test_a_client_msg_id_stored_twice_is_a_duplicate():
    stored = {"c": [ev(1, "a"), ev(2, "b"), ev(3, "b")]}
    r = verdict(stored=stored, received={"x": ("c", stored["c"])})
    assert r.duplicates == 1 and not r.ok


def test_an_event_handed_to_a_client_twice_is_a_duplicate():
    stored = {"c": [ev(1, "a"), ev(2, "b")]}
    r = verdict(received={"x": ("c", [ev(1, "a"), ev(1, "a"), ev(2, "b")])})
    assert r.duplicates == 1 and not r.ok


def test_a_gap_in_the_store_fails():
    stored = {"c": [ev(1, "a"), ev(3, "b")]}
    r = verdict(stored=stored, acked={"a": ("c", 1), "b": ("c", 3)}, received={"x": ("c", stored["c"])})
    assert any("not 1..2" in p and "1,3" in p for p in r.problems)


def test_a_client_that_missed_an_event_fails():
    r = verdict(received={"x": ("c", [ev(1, "a")])})
    assert any(p.startswith("x: its sequence") for p in r.problems)


def test_a_send_never_acked_fails():
    r = verdict(sent={"a": "c", "b": "c", "z": "c"})
    assert any("never acked" in p for p in r.problems)


def test_a_stored_message_nobody_sent_fails():
    stored = {"c": [ev(1, "a"), ev(2, "b"), ev(3, "q")]}
    r = verdict(stored=stored, received={"x": ("c", stored["c"])})
    assert any("nobody sent it" in p for p in r.problems)


def test_every_client_must_have_an_ack_within_10_s_of_the_clear():
    assert not verdict(cycles=[Cycle(0.0, 1.0, 10.5, 11.0)]).ok
    assert not verdict(cycles=[Cycle(0.0, 1.0, 0.5, 10.5)]).ok
    assert not verdict(cycles=[Cycle(0.0, 1.0, 0.5, None)]).ok
    assert not verdict(cycles=[Cycle(0.0, 1.0, None, None)]).ok
    assert not verdict(cycles=[]).ok
    assert verdict(cycles=[Cycle(0.0, 1.0, 0.1, 9.9)]).ok


def test_the_longest_silence_runs_from_the_fault_to_the_first_ack_after_it():
    from tests.faults.harness import longest_silence
    acks = [0.5, 1.0, 3.0, 12.0, 12.5, 40.0]
    # began at 1.5, cleared at 11: silences 1.5-3.0, 3.0-12.0 (the first ack after the clear)
    assert longest_silence(acks, 1.5, 11.0) == 9.0
    assert longest_silence([], 0.0, 5.0) == 5.0
