"""Settings of the reference app's re-implementation (Tests/DjangoReference/reference.py).

The database comes from DATABASE_URL (a URL or key=value connection string); the apps `main` (main.Project on
main_project) and `users` are Tests/DjangoCompat's, whose folder reference.py puts on sys.path. Django never runs
`migrate` here: every table comes from migrator's Migrations/.
"""

import os

from psycopg.conninfo import conninfo_to_dict

_parts = conninfo_to_dict(os.environ["DATABASE_URL"])
_STANDARD = {"dbname": "NAME", "user": "USER", "password": "PASSWORD", "host": "HOST", "port": "PORT"}

SECRET_KEY = "django-reference-benchmark-only"
DEBUG = False  # as in production: no query log kept in memory
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "guardian",
    "users",
    "main",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        **{key: str(_parts[name]) for name, key in _STANDARD.items() if name in _parts},
        "OPTIONS": {name: value for name, value in _parts.items() if name not in _STANDARD},
        "CONN_MAX_AGE": 0,
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "users.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None
GUARDIAN_ANONYMOUS_USER_NAME = None
LOGGING_CONFIG = None
