"""Production settings: Django's deployment checks pass, and nothing starts without its
secrets. No secret lives in the repository."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "HITL_ENV": "production",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "hitl.example.com",
    "DATABASE_URL": "postgres://hitl@db.example.com:5432/hitl",
    "REDIS_URL": "redis://cache.example.com:6379/0",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "HITL_"))}
    clean.pop("DATABASE_URL", None)
    clean.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_deployment_checks_pass_under_production_settings():
    checked = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "no issues" in checked.stdout


def test_production_refuses_to_start_without_its_secrets():
    refused = manage("check", HITL_ENV="production")
    assert refused.returncode != 0
    assert (
        "HITL_ENV=production needs DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS, DATABASE_URL, "
        "REDIS_URL" in refused.stderr
    )


def test_no_secret_is_committed():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    suspicious = [
        path
        for path in tracked
        if Path(path).suffix in {".pem", ".key", ".p12", ".sqlite3"}
        or Path(path).name in {".env", "id_rsa", "credentials.json"}
    ]
    assert suspicious == []
    leaked = re.compile(r"hitl_[0-9a-f]{12}_[\w-]{20,}|whsec_[\w-]{20,}|BEGIN [A-Z ]*PRIVATE KEY")
    for path in tracked:
        file = REPO / path
        if file.is_file() and file.suffix not in {".png", ".ico", ".woff", ".woff2"}:
            assert not leaked.search(file.read_text(errors="ignore")), path


def test_production_that_sends_messages_refuses_to_start_without_the_consoles_address():
    """Messages that reach people link to the console: in production, without
    HITL_CONSOLE_URL, those links would point at 127.0.0.1. Refused, with what to set; the
    embedded default (bin/start, the tests) needs none."""
    for reaching in ({"EMAIL_HOST": "smtp.example.com"}, {"SLACK_BOT_TOKEN": "xoxb-1"}):
        refused = manage("check", **PRODUCTION, **reaching)
        assert refused.returncode != 0
        assert (
            f"HITL_ENV=production with {next(iter(reaching))} set needs HITL_CONSOLE_URL"
            in refused.stderr
        )
        assert "(such as https://hitl.example.com)" in refused.stderr
        started = manage(
            "check", **PRODUCTION, **reaching, HITL_CONSOLE_URL="https://hitl.example.com"
        )
        assert started.returncode == 0, started.stdout + started.stderr
    # Telling nobody (no mail server, no Slack), production starts as before; and so does the
    # embedded default, whatever it sends.
    assert manage("check", **PRODUCTION).returncode == 0
    assert manage("check", EMAIL_HOST="smtp.example.com").returncode == 0


def test_a_request_body_wait_of_nothing_is_refused_at_start():
    """HITL_REQUEST_BODY_IDLE_SECONDS=0 would answer every request with a body 408."""
    refused = manage("check", **PRODUCTION, HITL_REQUEST_BODY_IDLE_SECONDS="0")
    assert refused.returncode != 0
    assert "HITL_REQUEST_BODY_IDLE_SECONDS is 0: it must be 1 or more." in refused.stderr
    assert manage("check", **PRODUCTION, HITL_REQUEST_BODY_IDLE_SECONDS="5").returncode == 0
