from actors.typing_state import TypingState


def test_start_and_refresh_tell_others_once():
    t = TypingState(5.0)
    assert t.update("a", True, now=0.0) is True
    assert t.update("a", True, now=3.0) is False


def test_typing_lapses_five_seconds_after_the_last_refresh():
    t = TypingState(5.0)
    t.update("a", True, now=0.0)
    t.update("a", True, now=3.0)
    assert t.expire(7.9) == []
    assert t.expire(8.0) == ["a"]
    assert not t


def test_stop_tells_others_only_if_typing():
    t = TypingState(5.0)
    assert t.update("a", False, now=0.0) is False
    t.update("a", True, now=0.0)
    assert t.update("a", False, now=1.0) is True
