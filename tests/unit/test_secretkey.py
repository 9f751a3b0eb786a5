from smship import secretkey


def test_generated_keys_are_strong_and_distinct():
    keys = {secretkey.generate() for _ in range(20)}
    assert len(keys) == 20
    assert all(secretkey.weakness(k) is None for k in keys)


def test_missing_default_and_short_keys_are_refused():
    assert "not set" in secretkey.weakness("")
    assert "not set" in secretkey.weakness(None)
    assert "known default" in secretkey.weakness("change-me-development-only")
    assert "known default" in secretkey.weakness(" Test-Secret-Key ")
    assert "weak" in secretkey.weakness("a" * 200)
    assert "weak" in secretkey.weakness("correct-horse-battery-staple")


def test_entropy_estimate_grows_with_variety_and_length():
    assert secretkey.estimated_bits("aaaa") == 0
    assert secretkey.estimated_bits("abcd") == 8
    assert secretkey.estimated_bits("abcdabcd") == 16
