"""The disk adapter's S3 POST policies: signed, pinned, expiring, strict about extra fields. Pure."""

from __future__ import annotations

import base64
import json

import pytest

from storage import post_policy
from storage.post_policy import SIGNATURE_FIELD, UploadRefused

SECRET = b"k" * 32
NOW = 1_800_000_000.0


def fields(**over) -> dict[str, str]:
    out = post_policy.signed_fields(SECRET, "media", "u_1/m1", "image/png", 10, 10, NOW + 60)
    out.update(over)
    return out


def refused(form: dict[str, str], now: float = NOW) -> UploadRefused:
    with pytest.raises(UploadRefused) as info:
        post_policy.verify(SECRET, "media", form, now)
    return info.value


def test_a_signed_form_gives_its_target():
    target = post_policy.verify(SECRET, "media", fields(), NOW)
    assert (target.key, target.content_type, target.min_size, target.max_size) == ("u_1/m1", "image/png", 10, 10)


def test_the_policy_is_s3s_document_and_pins_key_type_and_size():
    doc = json.loads(base64.b64decode(fields()["policy"]))
    assert doc["expiration"] == "2027-01-15T08:01:00.000Z"
    assert doc["conditions"] == [["eq", "$bucket", "media"], ["eq", "$key", "u_1/m1"],
                                 ["eq", "$Content-Type", "image/png"], ["content-length-range", 10, 10]]


def test_field_names_compare_case_insensitively_as_in_s3():
    form = fields()
    form["content-type"] = form.pop("Content-Type")
    assert post_policy.verify(SECRET, "media", form, NOW).content_type == "image/png"


@pytest.mark.parametrize("change", [{"key": "u_2/m1"}, {"Content-Type": "text/html"}])
def test_a_field_that_differs_from_its_condition_is_refused(change):
    exc = refused(fields(**change))
    assert (exc.status, exc.s3_code) == (403, "AccessDenied")


def test_a_field_no_condition_names_is_refused():
    assert refused(fields(acl="public-read")).status == 403


def test_a_policy_signed_with_another_key_is_refused():
    other = post_policy.signed_fields(b"x" * 32, "media", "u_1/m1", "image/png", 10, 10, NOW + 60)
    assert "signature" in refused(other).message


def test_a_policy_changed_after_signing_is_refused():
    form = fields()
    doc = json.loads(base64.b64decode(form["policy"]))
    doc["conditions"][3] = ["content-length-range", 0, 10**12]
    form["policy"] = base64.b64encode(json.dumps(doc).encode()).decode()
    assert refused(form).status == 403


def test_a_policy_without_signature_is_refused():
    form = fields()
    del form[SIGNATURE_FIELD]
    assert refused(form).status == 403


def test_a_policy_past_its_expiration_is_refused():
    assert post_policy.verify(SECRET, "media", fields(), NOW + 59.9)
    exc = refused(fields(), now=NOW + 60)
    assert (exc.status, exc.message) == (403, "the policy expired")


def test_the_bucket_condition_must_name_this_bucket():
    form = post_policy.signed_fields(SECRET, "other", "u_1/m1", "image/png", 10, 10, NOW + 60)
    assert refused(form).status == 403
