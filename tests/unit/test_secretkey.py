import math
import random
import string

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
    assert secretkey.estimated_bits("adbc") == 8
    assert secretkey.estimated_bits("adbcadbc") < secretkey.estimated_bits("adbcfegh")


def test_a_run_of_letters_and_digits_is_not_369_bits():
    # 62 distinct symbols, 369 bits by their frequencies alone; each follows from the one before.
    alphabet = string.ascii_lowercase + string.ascii_uppercase + string.digits
    assert secretkey.estimated_bits(alphabet) < 32
    assert "weak" in secretkey.weakness(alphabet)
    assert "weak" in secretkey.weakness("Passw0rd" * 8)


def test_a_random_key_of_letters_and_digits_is_judged_by_its_classes():
    rng = random.Random(7)
    key = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(64))
    assert secretkey.estimated_bits(key) <= 64 * math.log2(62)
    assert secretkey.weakness(key) is None
    assert "weak" in secretkey.weakness(key[:40])
