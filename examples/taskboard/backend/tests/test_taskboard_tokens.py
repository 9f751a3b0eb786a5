"""Login tokens and password hashes: what a changed SECRET_KEY does to a session."""
from taskboard import tokens


def test_a_token_names_its_user_under_the_key_that_signed_it():
    token = tokens.issue("key-one", "admin", now=1000)
    assert tokens.verify("key-one", token, now=1001) == "admin"


def test_a_token_signed_with_an_old_key_is_refused():
    token = tokens.issue("key-one", "admin", now=1000)
    assert tokens.verify("key-two", token, now=1001) is None


def test_expired_forged_and_malformed_tokens_are_refused():
    token = tokens.issue("key", "admin", now=1000)
    assert tokens.verify("key", token, now=1000 + tokens.LIFETIME + 1) is None
    user, expiry, signature = token.split(".")
    assert tokens.verify("key", f"root.{expiry}.{signature}", now=1001) is None
    for junk in ("", "admin", "admin.x.y", "admin.1.", ".1.abc"):
        assert tokens.verify("key", junk, now=0) is None


def test_passwords_check_against_their_hash_only():
    stored = tokens.hash_password("s3cret")
    assert tokens.check_password("s3cret", stored)
    assert not tokens.check_password("other", stored)
    assert not tokens.check_password("s3cret", "not-a-hash")
