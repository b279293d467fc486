"""Media settings are checked at boot: a scriptable content type cannot be allowed, S3 needs keys."""

from __future__ import annotations

import pytest

from raychat.config import ConfigError, Settings, load_settings


def test_the_default_list_is_images_audio_video_and_pdf():
    types = Settings().media_type_set()
    assert {"image/png", "audio/ogg", "video/mp4", "application/pdf"} <= types
    assert all(t.split("/")[0] in ("image", "audio", "video") or t == "application/pdf" for t in types)


@pytest.mark.parametrize("scriptable", ["text/html", "image/svg+xml", "application/xhtml+xml", "text/javascript",
                                        "application/javascript", "text/plain", "application/xml",
                                        "multipart/related", "application/x-shockwave-flash"])
def test_a_scriptable_type_fails_the_boot_naming_the_variable(scriptable):
    with pytest.raises(ConfigError) as info:
        load_settings(media_content_types=f"image/png,{scriptable}")
    assert "RAYCHAT_MEDIA_CONTENT_TYPES" in str(info.value) and scriptable in str(info.value)


def test_types_are_lower_cased_and_deduplicated():
    assert Settings(media_content_types=" Image/PNG ,image/png,application/octet-stream").media_content_types == \
        "image/png,application/octet-stream"


@pytest.mark.parametrize("bad", ["", "png", "image/png; charset=x", "image/*"])
def test_a_malformed_list_fails_the_boot(bad):
    with pytest.raises(ConfigError):
        load_settings(media_content_types=bad)


def test_s3_needs_both_keys_and_never_prints_them():
    with pytest.raises(ConfigError) as info:
        load_settings(s3_endpoint="minio:9000", s3_secret_key="hunter2-hunter2")
    assert "RAYCHAT_S3_SECRET_KEY" in str(info.value) and "hunter2" not in str(info.value)
    assert Settings(s3_endpoint="minio:9000", s3_access_key="a", s3_secret_key="b").s3_endpoint == "minio:9000"


def test_the_public_s3_url_has_no_path():
    assert Settings(s3_public_url="https://media.example.com/").s3_public_url == "https://media.example.com"
    with pytest.raises(ConfigError):
        load_settings(s3_public_url="https://example.com/media")
    with pytest.raises(ConfigError):
        load_settings(public_url="ftp://example.com")
    assert Settings(public_url="https://example.com/chat/").public_url == "https://example.com/chat"
