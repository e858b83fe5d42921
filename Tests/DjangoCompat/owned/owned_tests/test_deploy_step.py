"""The deploy step on a schema Django owns: `manage.py migrate`, then `migrator update-roles` with no folder.

Django's migrate creates every table (default auth.User, so memberships are in auth_user_groups; main_project with a
255-character name). The app's code then makes role groups the reference app's way: per project and role
`Group.objects.get_or_create(name=f"{pk}_{name}_{Role}")`, `group.permissions.set(...)`, `assign_perm` on the project,
users in groups. One project's name is too long for its groups to fit auth_group.name (150), so the app made none
for it. Then migrator attaches: it must adopt the groups (same ids, memberships kept, nothing duplicated), give the
long-named project's groups up with a report instead of failing, add nothing to public but its triggers, and leave
Django's own checks passing.
"""

import json

from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from guardian.shortcuts import assign_perm, get_objects_for_user, get_perms

from main.models import CATALOGUE, Project

from . import support
from .support import ROLES, OwnedTestCase

NAMES = ["Alpha", "O'Brien \"β\" traps", "Ünïcödé 蛾 🦋"]
LONG_NAME = "L" * 200
MEMBERSHIPS = {"ana": [(0, "BasicMember"), (1, "ProjectManager")], "ben": [(1, "Researcher"), (2, "Identifier")]}


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
        for codename in sorted(set().union(*ROLES.values())):
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

        run = support.run_migrator(db, "update-roles", "--json")
        cls.report = json.loads(run.stdout)
        cls.stderr = run.stderr
        cls.public_after = support.public_objects(db)
        support.use_database(db)

    def test_groups_are_adopted_not_duplicated(self):
        """Every group the app made keeps its id; no name appears twice; the long-named project got none."""
        after = dict(Group.objects.values_list("name", "id"))
        for name, group_id in self.groups_before.items():
            self.assertEqual(after.get(name), group_id, f"group {name!r} was not kept")
        self.assertEqual(len(after), len(self.groups_before), f"groups added: {sorted(set(after) - set(self.groups_before))}")
        self.assertEqual(self.report["tooLongGroupsTotal"], 5, json.dumps(self.report, indent=1))
        adopted = sum(changes.get("groupsAdopted", 0) for changes in self.report["roles"].values())
        self.assertEqual(adopted, len(NAMES) * len(ROLES))

    def test_memberships_stay(self):
        self.assertEqual(set(support.query(self.db, "SELECT user_id, group_id FROM auth_user_groups")), self.memberships_before)

    def test_guardian_answers_exactly_the_catalogue(self):
        for project in self.projects:
            for role, codenames in ROLES.items():
                group = Group.objects.get(name=group_name(project, role))
                self.assertEqual(set(get_perms(group, project)), set(codenames), f"{group.name}")
        for name, memberships in MEMBERSHIPS.items():
            user = User.objects.get(username=name)
            for index, project in enumerate(self.projects):
                granted = set().union(*(ROLES[role] for i, role in memberships if i == index))
                for codename in set().union(*ROLES.values()):
                    self.assertEqual(
                        user.has_perm(f"main.{codename}", project), codename in granted, f"{name} {codename} on {project.pk}"
                    )
            visible = get_objects_for_user(user, "main.view_project", klass=Project, accept_global_perms=False)
            self.assertEqual({p.pk for p in visible}, {self.projects[i].pk for i, _ in memberships})

    def test_a_name_too_long_is_reported_not_fatal(self):
        """The long-named project's five groups are listed in --json and warned about; nothing was made for it."""
        listed = {entry["projectID"] for entry in self.report["tooLongGroups"]}
        self.assertEqual(listed, {self.long.pk}, json.dumps(self.report["tooLongGroups"], indent=1))
        self.assertIn("longer than auth_group.name holds", self.stderr)
        self.assertFalse(Group.objects.filter(name__startswith=f"{self.long.pk}_").exists())
        status = support.run_migrator(self.db, "status")
        self.assertIn("left out 5 with a name too long for auth_group.name", status.stdout)

    def test_nothing_is_added_to_public_but_the_triggers(self):
        added = self.public_after - self.public_before
        self.assertEqual(self.public_before - self.public_after, set())
        self.assertTrue(added and all(item.startswith("trigger migrator_project_") for item in added), sorted(added))
        self.assertEqual(support.query(self.db, "SELECT to_regnamespace('migrator') IS NOT NULL")[0][0], True)

    def test_djangos_own_checks_still_pass(self):
        """`migrate --check`, `makemigrations --check` and `check`: migrator changed nothing Django tracks."""
        support.django_checks()

    def test_a_project_deleted_through_the_orm_takes_its_groups_and_memberships(self):
        """A project of its own (the others are read by the other tests): synced by a second update-roles, a member
        added, then deleted through the ORM."""
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
