import pytest

from gateway.accounts import check_display_name, check_password, derive_username, normalize_username
from raychat.errors import Invalid


def test_username_is_case_folded():
    assert normalize_username("Alice_B.Smith-2") == "alice_b.smith-2"


def test_fullwidth_username_normalizes_to_ascii():
    """NFKC maps compatibility forms, so 'ＡＬＩＣＥ' and 'alice' are one account."""
    assert normalize_username("ＡＬＩＣＥ") == "alice"


def test_kelvin_sign_folds_to_k():
    """U+212A KELVIN SIGN looks like K and becomes 'k', not a look-alike account."""
    assert normalize_username("\u212aate") == "kate"


def test_username_bounds_are_3_and_32():
    assert normalize_username("abc") == "abc"
    assert normalize_username("a" * 32) == "a" * 32


@pytest.mark.parametrize("raw", ["ab", "", "a" * 33])
def test_username_of_wrong_length_is_invalid(raw):
    with pytest.raises(Invalid, match="username"):
        normalize_username(raw)


@pytest.mark.parametrize("raw", ["al ice", "alice!", "al@ice", "alice\n", "ali/ce", "al\x00ice"])
def test_username_with_a_disallowed_character_is_invalid(raw):
    with pytest.raises(Invalid, match="username"):
        normalize_username(raw)


@pytest.mark.parametrize("raw", ["аlice", "josé", "用户名字", "ali\u200bce"])
def test_username_with_non_ascii_letters_is_invalid(raw):
    """Cyrillic 'а', accented letters, CJK and zero-width characters do not survive normalization."""
    with pytest.raises(Invalid, match="username"):
        normalize_username(raw)


@pytest.mark.parametrize("raw", [None, 42, b"alice"])
def test_non_string_username_is_invalid(raw):
    with pytest.raises(Invalid, match="username"):
        normalize_username(raw)


def test_username_error_is_an_invalid_with_its_wire_code():
    with pytest.raises(Invalid) as info:
        normalize_username("x")
    assert info.value.to_dict()["code"] == "invalid"


@pytest.mark.parametrize("pw", ["a" * 8, "a" * 256, "pässwörd", "🔑" * 8])
def test_password_within_bounds_is_accepted(pw):
    check_password(pw)


@pytest.mark.parametrize("pw", ["a" * 7, "", "a" * 257])
def test_password_out_of_bounds_is_invalid(pw):
    with pytest.raises(Invalid, match="password"):
        check_password(pw)


@pytest.mark.parametrize("pw", [None, 12345678, b"bytes password"])
def test_non_string_password_is_invalid(pw):
    with pytest.raises(Invalid, match="password"):
        check_password(pw)


def test_password_with_a_lone_surrogate_is_invalid():
    """JSON lets a client send '\\ud800'; it cannot be hashed as UTF-8, so it is refused as input."""
    with pytest.raises(Invalid, match="password"):
        check_password("abcdefgh\ud800")


def test_display_name_is_stripped():
    assert check_display_name("  Alice Smith \t") == "Alice Smith"


def test_display_name_bounds_are_1_and_64_after_strip():
    assert check_display_name("A") == "A"
    assert check_display_name("x" * 64) == "x" * 64


@pytest.mark.parametrize("name", ["", "   ", "x" * 65])
def test_display_name_of_wrong_length_is_invalid(name):
    with pytest.raises(Invalid, match="display_name"):
        check_display_name(name)


@pytest.mark.parametrize("name", ["Al\x00ice", "Al\nice", "Al\x1bice", "Al\x7fice", "Al\u2028ice",
                                  "evil\u202eexe.txt", "Al\ud800ice"])
def test_display_name_with_a_control_character_is_invalid(name):
    with pytest.raises(Invalid, match="display_name"):
        check_display_name(name)


def test_display_name_keeps_emoji_sequences():
    """A ZWJ emoji sequence is a format character that must stay allowed."""
    family = "\U0001F468\u200d\U0001F469\u200d\U0001F467"
    assert check_display_name(f"Alice {family}") == f"Alice {family}"


@pytest.mark.parametrize("name", [None, 5])
def test_non_string_display_name_is_invalid(name):
    with pytest.raises(Invalid, match="display_name"):
        check_display_name(name)


@pytest.mark.parametrize("hint, name", [
    ("Alice", "alice"),
    ("ＡＬＩＣＥ", "alice"),
    ("alice smith!", "alicesmith"),
    ("a" * 40, "a" * 24),
    ("ab", "user"),
    ("", "user"),
    (None, "user"),
    ("日本語", "user"),
])
def test_derived_username_is_valid_and_leaves_room_for_a_suffix(hint, name):
    assert derive_username(hint) == name
    assert normalize_username(derive_username(hint) + "-abc123") == derive_username(hint) + "-abc123"
