"""Django settings for the django-helpdesk column of ``benchmarks/service.py``.

SQLite in WAL mode with synchronous=NORMAL (as our store and the floor loop), mail sent over
SMTP to the benchmark's sink; paths and the port come from the environment.
"""

from __future__ import annotations

import os

SECRET_KEY = "benchmark-only"  # a throwaway project on loopback
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
SITE_ID = 1
ALLOWED_HOSTS = ["localhost"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.sites",
    "django.contrib.messages",
    "django.contrib.humanize",
    "rest_framework",
    "helpdesk",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "helpdesk_peer.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_DB", "helpdesk.db"),
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
MEDIA_ROOT = os.environ.get("BENCH_MEDIA", "media")
STATIC_URL = "/static/"
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(os.environ.get("BENCH_SMTP_PORT", "25"))
DEFAULT_FROM_EMAIL = "helpdesk@desk.example"
HELPDESK_TEAMS_MODE_ENABLED = False
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "ERROR"}}
