import os
import subprocess
import sys

from itsdangerous import TimestampSigner

from refapp_testlib import APP_ROOT


def _resign(key: str, value: str) -> str:
    """Re-sign a session cookie's payload with another key, as a rotated deployment would see it."""
    payload = value.rsplit(".", 2)[0]
    return TimestampSigner(key).sign(payload).decode()


def test_session_round_trip(make_settings, client_for):
    with client_for(make_settings()) as client:
        assert client.get("/session").json() == {"name": None}
        assert client.post("/session", json={"name": "Ada"}).status_code == 200
        cookie = client.cookies.get("session")
        assert cookie
        assert client.get("/session").json() == {"name": "Ada"}
        assert "Hello, Ada." in client.get("/").text


def test_cookie_attributes_follow_starlette_defaults(make_settings, client_for):
    with client_for(make_settings()) as client:
        header = client.post("/session", json={"name": "x"}).headers["set-cookie"].lower()
    assert "httponly" in header
    assert "samesite=lax" in header
    assert "secure" not in header


def test_cookie_signed_with_another_key_is_rejected(make_settings, client_for):
    with client_for(make_settings(SM_SECRET_KEY="key-one")) as client:
        client.post("/session", json={"name": "Grace"})
        good = client.cookies.get("session")
        # The same payload signed with the app's own key is accepted, so the format is right...
        client.cookies.clear()
        client.cookies.set("session", _resign("key-one", good))
        assert client.get("/session").json() == {"name": "Grace"}
        # ...and signed with any other key it is ignored.
        client.cookies.clear()
        client.cookies.set("session", _resign("another-key", good))
        assert client.get("/session").json() == {"name": None}
        client.cookies.clear()
        client.cookies.set("session", good)
        assert client.get("/session").json() == {"name": "Grace"}


def test_rotating_secret_key_invalidates_login(make_settings, client_for, migrated_db):
    email = "rotate@example.test"
    env = {"SM_DATABASE_URL": migrated_db, "SM_ADMIN_PASSWORD": "rotate-password-1"}
    result = subprocess.run(
        [sys.executable, "-m", "refapp", "create-admin", "--email", email],
        cwd=APP_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr

    with client_for(make_settings(SM_SECRET_KEY="before-rotation")) as client:
        assert client.get("/me").status_code == 401
        assert client.post("/login", json={"email": email, "password": "wrong-password"}).status_code == 401
        resp = client.post("/login", json={"email": email, "password": "rotate-password-1"})
        assert resp.status_code == 200, resp.text
        me = client.get("/me")
        assert me.status_code == 200 and me.json()["email"] == email and me.json()["is_admin"] is True
        cookie = client.cookies.get("session")

    with client_for(make_settings(SM_SECRET_KEY="before-rotation")) as same_key:
        same_key.cookies.set("session", cookie)
        assert same_key.get("/me").status_code == 200

    with client_for(make_settings(SM_SECRET_KEY="after-rotation")) as rotated:
        rotated.cookies.set("session", cookie)
        assert rotated.get("/me").status_code == 401
