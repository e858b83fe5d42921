"""Settings of the Django project that owns its schema: Django's own `migrate` creates every table, and migrator
attaches to it afterwards (update-roles as a deploy step, serve --no-migrate as a sidecar), with no migrations folder.

Unlike compat_project, the user model is Django's default `auth.User` (memberships in `auth_user_groups`), and the
project model is managed, with a name longer than the 80 characters of migrator's example schema.
The database comes from MIGRATOR_TEST_DATABASE_URL; each test class switches to a database of its own.
"""

from djangotest import database_settings

SECRET_KEY = "django-owned-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "guardian",
    "main",
]

DATABASES = {"default": database_settings()}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
# No anonymous user row is needed by these tests.
ANONYMOUS_USER_NAME = None
GUARDIAN_ANONYMOUS_USER_NAME = None
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING_CONFIG = None
