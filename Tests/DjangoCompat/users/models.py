"""The reference app's custom user model on migrator's users_user (Migrations/0003_users.sql).

AbstractUser gives exactly the columns of users_user; its `groups` and `user_permissions` many-to-many fields use
Django's default link tables for a model on users_user: users_user_groups(user_id, group_id) and
users_user_user_permissions(user_id, permission_id). Unmanaged: Django never creates or alters these tables.
"""

from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    class Meta(AbstractUser.Meta):
        db_table = "users_user"
        managed = False
