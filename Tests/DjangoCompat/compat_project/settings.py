"""Settings of the Django project that reads what migrator wrote.

The database comes from MIGRATOR_TEST_DATABASE_URL (a URL or key=value connection string of a role that may create
databases); each test class switches the connection to a database of its own (compat_tests.support.use_database).
Django never runs `migrate` here: every table comes from migrator's Migrations/.
"""

from djangotest import database_settings

SECRET_KEY = "django-compat-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "guardian",
    "users",
    "main",
]

DATABASES = {"default": database_settings()}

# As in the reference app (cookiecutter-django): users.User and main.Project have bigint ids; auth, contenttypes and
# guardian declare their own (integer) AutoField.
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "users.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
# No anonymous user row: migrator's schema has none, and guardian must not want one.
ANONYMOUS_USER_NAME = None
GUARDIAN_ANONYMOUS_USER_NAME = None

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING_CONFIG = None
