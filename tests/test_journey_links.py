"""Journey links: a link opens its own company's pages until it expires; a changed link opens nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consent_lifecycle.api.journey.links import DEFAULT_TTL, Link, LinkError, make_link, verify

SECRET = b"s" * 32
NOW = datetime(2026, 12, 6, 12, 0, 0, 123456, tzinfo=UTC)
A = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
B = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"


def test_a_link_opens_its_company_until_it_expires():
    token, expires_at = make_link(SECRET, A, "lending", NOW)
    assert expires_at == (NOW + DEFAULT_TTL).replace(microsecond=0)
    assert verify(SECRET, token, A, NOW) == Link(A, "lending", expires_at)
    assert verify(SECRET, token, A, expires_at - timedelta(seconds=1)).product == "lending"
    with pytest.raises(LinkError) as raised:
        verify(SECRET, token, A, expires_at)
    assert raised.value.reason == "expired" and "expired on 2026-12-13" in str(raised.value)
    company_wide, _ = make_link(SECRET, A, None, NOW, timedelta(hours=1))
    assert verify(SECRET, company_wide, A, NOW).product is None


def test_a_link_for_one_company_is_refused_on_another():
    token, _ = make_link(SECRET, A, None, NOW)
    with pytest.raises(LinkError) as raised:
        verify(SECRET, token, B, NOW)
    assert raised.value.reason == "other-company" and A not in str(raised.value) and B not in str(raised.value)


@pytest.mark.parametrize("change", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # the signature
    lambda t: "x" + t[1:] if t[0] != "x" else "y" + t[1:],  # the payload
    lambda t: t.split(".")[0] + "." + t.split(".")[0],  # a signature made of something else
])
def test_a_changed_link_is_tampered(change):
    token, _ = make_link(SECRET, A, "lending", NOW)
    with pytest.raises(LinkError) as raised:
        verify(SECRET, change(token), A, NOW)
    assert raised.value.reason == "tampered"


def test_a_link_signed_with_another_secret_or_forged_for_another_company_is_tampered():
    token, _ = make_link(b"other" * 8, A, None, NOW)
    with pytest.raises(LinkError, match="altered"):
        verify(SECRET, token, A, NOW)
    mine, _ = make_link(SECRET, A, None, NOW)
    theirs, _ = make_link(SECRET, B, None, NOW)
    forged = theirs.split(".")[0] + "." + mine.split(".")[1]  # B's payload under A's signature
    with pytest.raises(LinkError) as raised:
        verify(SECRET, forged, B, NOW)
    assert raised.value.reason == "tampered"


@pytest.mark.parametrize("token", ["", "abc", ".", "abc.", ".abc", "é.é"])
def test_a_malformed_link_is_refused(token):
    with pytest.raises(LinkError) as raised:
        verify(SECRET, token, A, NOW)
    assert raised.value.reason in ("malformed", "tampered")


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(seconds=-1), timedelta(days=31)])
def test_a_link_lives_a_sensible_time(ttl):
    with pytest.raises(ValueError, match="at most 30 days"):
        make_link(SECRET, A, None, NOW, ttl)
