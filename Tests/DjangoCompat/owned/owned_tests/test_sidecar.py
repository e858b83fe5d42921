"""The sidecar on a schema Django owns: `migrator serve --no-migrate`, with no folder and no earlier migrator run.

Django's migrate creates every table and two projects exist before the daemon starts. The daemon installs its own
objects, runs the first full sync itself (no version was recorded), and then follows what the app does through its
ORM: a new project gets its groups, a rename renames them, a delete leaves no role group and no membership of one.
Afterwards Django's own checks still pass.
"""

import time

from django.contrib.auth.models import Group, User
from guardian.shortcuts import get_perms

from main.models import Project

from . import support
from .support import ROLES, OwnedTestCase


def role_group_names(project):
    return {f"{project.pk}_{project.name}_{role}" for role in ROLES}


def in_step(project):
    """All of the project's role groups exist, each with exactly its role's codenames on the project."""
    groups = {group.name: group for group in Group.objects.filter(name__in=role_group_names(project))}
    if set(groups) != role_group_names(project):
        return False
    return all(set(get_perms(groups[f"{project.pk}_{project.name}_{role}"], project)) == set(codenames) for role, codenames in ROLES.items())


class SidecarTests(OwnedTestCase):
    database_label = "sidecar"

    @classmethod
    def populate(cls):
        cls.existing = [Project.objects.create(name=name) for name in ("before one", "before two")]
        cls.sidecar = support.Sidecar(cls.db, "--reconcile-interval", "60s")
        if support.wait_for(lambda: cls.sidecar.get("/readyz")[0] == 200, 30) is None:
            transcript = cls.sidecar.transcript()
            cls.sidecar.stop()
            raise AssertionError("serve --no-migrate never became ready\n" + transcript)

    @classmethod
    def tearDownClass(cls):
        code = cls.sidecar.stop()
        super().tearDownClass()
        assert code == 0, f"serve exited {code} on SIGTERM\n{cls.sidecar.transcript()}"

    def test_1_the_first_sync_gave_the_existing_projects_their_groups(self):
        for project in self.existing:
            self.assertTrue(in_step(project), f"{project.name}\n{self.sidecar.transcript()}")

    def test_2_a_project_created_through_the_orm_gets_its_groups(self):
        project = Project.objects.create(name="made by the app")
        committed = time.monotonic()
        took = support.wait_for(lambda: in_step(project), 10)
        self.assertIsNotNone(took, self.sidecar.transcript())
        # Informational: the README's latency figures come from scripts/bench-daemon, not from a timed test.
        print(f"\n  new project in step {time.monotonic() - committed:.3f} s after its commit")

    def test_3_a_rename_is_followed(self):
        project = Project.objects.create(name="old name")
        self.assertIsNotNone(support.wait_for(lambda: in_step(project), 10), self.sidecar.transcript())
        project.name = "new name"
        project.save()
        self.assertIsNotNone(support.wait_for(lambda: in_step(project), 10), self.sidecar.transcript())
        self.assertFalse(Group.objects.filter(name__contains="_old name_").exists())

    def test_4_a_delete_through_the_orm_leaves_no_group_and_no_membership(self):
        project = Project.objects.create(name="to delete")
        self.assertIsNotNone(support.wait_for(lambda: in_step(project), 10), self.sidecar.transcript())
        user = User.objects.create_user("member", password="x")
        group = Group.objects.get(name=f"{project.pk}_{project.name}_BasicMember")
        user.groups.add(group)
        group_ids = list(Group.objects.filter(name__in=role_group_names(project)).values_list("id", flat=True))
        project.delete()
        self.assertFalse(Group.objects.filter(id__in=group_ids).exists())
        self.assertEqual(
            support.query(self.db, "SELECT count(*) FROM auth_user_groups WHERE group_id = ANY(%s)", (group_ids,))[0][0], 0
        )
        # The daemon hears the delete too; it must not recreate anything for the project.
        time.sleep(0.5)
        self.assertFalse(Group.objects.filter(name__startswith=f"{project.pk}_").exists())

    def test_5_djangos_own_checks_still_pass(self):
        support.django_checks()
