"""The deploy step on a schema Django owns: `manage.py migrate`, then `migrator update-roles` with no folder.

Django's migrate creates every table (default auth.User, so memberships are in auth_user_groups; main_project with a
255-character name). The app's code then makes role groups the reference app's way: per project and role
`Group.objects.get_or_create(name=f"{pk}_{name}_{Role}")`, `group.permissions.set(...)`, `assign_perm` on the project,
users in groups. One project's name is too long for its groups to fit auth_group.name (150), so the app made none
for it. Then migrator attaches, as a deploy step would run it: DATABASE_URL only, no --migrations, from a folder
with no Migrations/. It must adopt the groups (same ids, memberships kept, nothing duplicated), give the long-named
project's groups up with a report instead of failing, add nothing to public but its triggers on main_project, and
leave Django's own checks passing.
"""

import json
import re

from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db.models import Count
from guardian.shortcuts import assign_perm, get_objects_for_user, get_perms

from main.models import CATALOGUE, Project

from . import support
from .support import ROLES, OwnedTestCase

NAMES = ["Alpha", "O'Brien \"β\" traps", "Ünïcödé 蛾 🦋"]
# 200 characters: fits main_project.name (255) but not a group name `{id}_{name}_{Role}` in auth_group.name (150).
LONG_NAME = "L" * 200
MEMBERSHIPS = {"ana": [(0, "BasicMember"), (1, "ProjectManager")], "ben": [(1, "Researcher"), (2, "Identifier")]}
ALL_CODENAMES = frozenset().union(*ROLES.values())


def group_name(project, role):
    return f"{project.pk}_{project.name}_{role}"


def display_name(codename):
    declared = {p["codename"]: p["name"] for p in CATALOGUE["project_permissions"]}
    return declared.get(codename) or "Can " + codename.replace("_", " ")


class DeployStepTests(OwnedTestCase):
    database_label = "deploy"

    @classmethod
    def populate(cls):
        db = cls.db
        ct = ContentType.objects.get_for_model(Project)
        # Django's post_migrate made the Meta.permissions and the default add/change/delete/view rows; the reference
        # app's code makes any other codename a role uses the same way, by get_or_create.
        for codename in sorted(ALL_CODENAMES):
            Permission.objects.get_or_create(content_type=ct, codename=codename, defaults={"name": display_name(codename)})
        cls.projects = [Project.objects.create(name=name) for name in NAMES]
        cls.long = Project.objects.create(name=LONG_NAME)
        for project in cls.projects:
            for role, codenames in ROLES.items():
                group, _ = Group.objects.get_or_create(name=group_name(project, role))
                permissions = list(Permission.objects.filter(content_type=ct, codename__in=codenames))
                group.permissions.set(permissions)
                for permission in permissions:
                    assign_perm(permission, group, project)
        cls.users = {name: User.objects.create_user(name, password="x") for name in MEMBERSHIPS}
        for name, memberships in MEMBERSHIPS.items():
            for index, role in memberships:
                cls.users[name].groups.add(Group.objects.get(name=group_name(cls.projects[index], role)))
        cls.groups_before = dict(Group.objects.values_list("name", "id"))
        cls.memberships_before = set(support.query(db, "SELECT user_id, group_id FROM auth_user_groups"))
        cls.public_before = support.public_objects(db)
        cls.migrator_schema_before = support.schema_exists(db, "migrator")

        # The deploy step itself, as a release job runs it; then the same command with --json, for its report
        # (a full reconcile again, which must change nothing more).
        cls.deploy = support.run_migrator(db, "update-roles")
        cls.groups_after_deploy = dict(Group.objects.values_list("name", "id"))
        report_run = support.run_migrator(db, "update-roles", "--json")
        cls.report = support.parse_json_report(report_run, ["update-roles", "--json"])
        cls.report_text = json.dumps(cls.report, indent=1, ensure_ascii=False)
        # Snapshots, so that a test that changes the database (a project deleted) cannot blur another's failure.
        cls.groups_after = dict(Group.objects.values_list("name", "id"))
        cls.duplicated_names = list(Group.objects.values("name").annotate(n=Count("id")).filter(n__gt=1).values_list("name", "n"))
        cls.memberships_after = set(support.query(db, "SELECT user_id, group_id FROM auth_user_groups"))
        cls.public_after = support.public_objects(db)
        support.use_database(db)

    def test_groups_are_adopted_not_duplicated(self):
        """Every group the app made keeps its id; no name appears twice; no group was added (the long-named project
        got none); the --json run after the deploy step changed no group either."""
        after = self.groups_after
        for name, group_id in self.groups_before.items():
            self.assertEqual(after.get(name), group_id, f"group {name!r} was not kept\n{self.deploy.stderr}")
        self.assertEqual(sorted(set(after) - set(self.groups_before)), [], f"groups added\n{self.deploy.stderr}")
        self.assertEqual(self.duplicated_names, [])
        self.assertEqual(self.groups_after_deploy, after, "the second update-roles (--json) changed groups")

    def test_memberships_stay(self):
        self.assertEqual(self.memberships_after, self.memberships_before)

    def test_guardian_answers_exactly_the_catalogue(self):
        """get_perms(group, project), group.permissions, user.has_perm(..., project) and get_objects_for_user: exactly
        the catalogue for every role of every project migrator synced."""
        for project in self.projects:
            for role, codenames in ROLES.items():
                group = Group.objects.get(name=group_name(project, role))
                self.assertEqual(set(get_perms(group, project)), set(codenames), f"get_perms of {group.name}")
                self.assertEqual(
                    set(group.permissions.filter(content_type__app_label="main").values_list("codename", flat=True)),
                    set(codenames),
                    f"group.permissions of {group.name}",
                )
        for name, memberships in MEMBERSHIPS.items():
            user = User.objects.get(username=name)
            for index, project in enumerate(self.projects):
                granted = set().union(*(ROLES[role] for i, role in memberships if i == index))
                for codename in ALL_CODENAMES:
                    self.assertEqual(
                        user.has_perm(f"main.{codename}", project), codename in granted, f"{name} {codename} on {project.pk}"
                    )
            visible = get_objects_for_user(user, "main.view_project", klass=Project, accept_global_perms=False)
            self.assertEqual({p.pk for p in visible}, {self.projects[i].pk for i, _ in memberships})

    def test_a_name_too_long_is_reported_not_fatal(self):
        """The deploy step exited 0; `update-roles --json` lists the long-named project's five groups under the
        documented keys, and no other project; the deploy step warned about it; no group was made; status says so."""
        listed = {entry["projectID"] for entry in self.report["tooLongGroups"]}
        self.assertEqual(listed, {self.long.pk}, self.report_text)
        self.assertEqual(sorted(entry["role"] for entry in self.report["tooLongGroups"]), sorted(ROLES), self.report_text)
        self.assertEqual(self.report["tooLongGroupsTotal"], len(ROLES), self.report_text)
        # A log line without its leading timestamp, whose digits could pass for the id.
        warned = [
            line for line in self.deploy.stderr.splitlines()
            if re.search(r"warn", line, re.IGNORECASE) and support.mentions_id(line.split(" ", 1)[-1], self.long.pk)
        ]
        self.assertTrue(warned, f"the deploy step did not warn about project {self.long.pk}\n--- stderr\n{self.deploy.stderr}")
        self.assertFalse(Group.objects.filter(name__startswith=f"{self.long.pk}_").exists())
        status = support.run_migrator(self.db, "status")
        self.assertIn("the last sync left out 5 role groups with a name too long for auth_group.name", status.stdout)

    def test_nothing_is_added_to_public_but_the_triggers(self):
        """Tables, views, sequences, indexes, types and functions of public are the same as Django's migrate left
        them; what is new is triggers named migrator_% on main_project, migrator_group_deleted on auth_group, and migrator's own schema `migrator`."""
        removed = self.public_before - self.public_after
        added = self.public_after - self.public_before
        self.assertEqual(sorted(removed), [], "objects of public that migrator removed")
        self.assertEqual(
            sorted(item for item in added if not support.is_migrator_trigger(item)),
            [],
            f"objects migrator added to public other than its triggers on main_project and auth_group (all added: {sorted(added)})",
        )
        self.assertTrue(any(re.fullmatch(r"trigger migrator_\S+ on main_project", item) for item in added), "no migrator_% trigger on main_project")
        self.assertIn("trigger migrator_group_deleted on auth_group", added)
        self.assertFalse(self.migrator_schema_before, "schema migrator existed before migrator ran")
        self.assertTrue(support.schema_exists(self.db, "migrator"), "no schema migrator after update-roles")

    def test_djangos_own_checks_still_pass(self):
        """`migrate --check`, `makemigrations --check --dry-run` and `check`: migrator changed nothing Django tracks."""
        support.django_checks()

    def test_a_project_deleted_through_the_orm_takes_its_groups_and_memberships(self):
        """A project of its own (the others are read by the other tests): synced by a second update-roles, a member
        added, then deleted through the ORM with no daemon running (the triggers alone must do it)."""
        project = Project.objects.create(name="short-lived")
        support.run_migrator(self.db, "update-roles")
        group_ids = list(Group.objects.filter(name__startswith=f"{project.pk}_").values_list("id", flat=True))
        self.assertEqual(len(group_ids), len(ROLES))
        User.objects.create_user("leaving", password="x").groups.add(*group_ids)
        project.delete()
        self.assertFalse(Group.objects.filter(id__in=group_ids).exists())
        self.assertEqual(
            support.query(self.db, "SELECT count(*) FROM auth_user_groups WHERE group_id = ANY(%s)", (group_ids,))[0][0], 0
        )
