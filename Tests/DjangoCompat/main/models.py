"""main.Project on migrator's main_project (Migrations/0005_main_project.sql), unmanaged.

Its Meta.permissions are the project permissions of the default role catalogue (the reference app's), read from the
fixture the Swift tests check the built-in catalogue against. Django's default permissions (add_, change_, delete_,
view_project) stay on: the catalogue's roles use view_project and delete_project under Django's own names.
"""

import json
from pathlib import Path

from django.db import models

CATALOGUE_PATH = Path(__file__).resolve().parents[2] / "RoleSyncTests" / "Fixtures" / "antenna-roles.json"
CATALOGUE = json.loads(CATALOGUE_PATH.read_text(encoding="utf-8"))


class Project(models.Model):
    name = models.CharField(max_length=80)
    description = models.TextField(default="", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    active = models.BooleanField(default=True)

    class Meta:
        db_table = "main_project"
        managed = False
        ordering = ["pk"]
        permissions = [(p["codename"], p["name"]) for p in CATALOGUE["project_permissions"]]

    def __str__(self):
        return self.name
