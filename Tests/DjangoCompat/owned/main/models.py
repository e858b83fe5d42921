"""main.Project, managed by Django: its table comes from this app's own migrations (main/migrations).

Its Meta.permissions are the project permissions of the default role catalogue (the reference app's), read from the
fixture the Swift tests check the built-in catalogue against. The name may be 255 characters long, so some
projects' group names (`{id}_{name}_{Role}`) cannot fit auth_group.name's 150.
"""

import json
from pathlib import Path

from django.db import models

CATALOGUE_PATH = Path(__file__).resolve().parents[3] / "RoleSyncTests" / "Fixtures" / "antenna-roles.json"
CATALOGUE = json.loads(CATALOGUE_PATH.read_text(encoding="utf-8"))


class Project(models.Model):
    name = models.CharField(max_length=255)
    description = models.TextField(default="", blank=True)

    class Meta:
        db_table = "main_project"
        ordering = ["pk"]
        permissions = [(p["codename"], p["name"]) for p in CATALOGUE["project_permissions"]]

    def __str__(self):
        return self.name
