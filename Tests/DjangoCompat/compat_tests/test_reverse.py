"""Reverse: Django code made the role groups the reference app's way; then migrator migrates the database.

Database: `migrator migrate --skip-roles` (the tables only, no roles), then, with the ORM and guardian as the
reference app does it: Django's post_migrate permissions (create_permissions) and get_or_create for the role
codenames Meta does not declare, projects, per project and role `Group.objects.create(name=f"{pk}_{name}_{Role}")`,
`group.permissions.add(*perms)`, `assign_perm(perm, group, project)`, users in groups. Some groups are made to drift
(missing and extra permissions, globally and on the object), and rows that are not migrator's are added (a group
that is no role, a user object permission, a role group's grants on another project and on another content type).
Then `migrator migrate`: no role version is stored yet, so it reconciles everything and adopts the groups by name.
"""

from django.apps import apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from guardian.shortcuts import assign_perm, get_perms, remove_perm

from main.models import CATALOGUE, Project
from users.models import User

from . import support
from .support import ALL_CODENAMES, ROLES, CompatTestCase

PROJECT_NAMES = ["Alpha", "O'Brien \"β\" traps", "Ünïcödé 蛾 🦋", "Alpha"]

# user → [(index into the projects, role)]
MEMBERSHIPS = {
    "ana": [(0, "BasicMember"), (1, "ProjectManager")],
    "ben": [(0, "Researcher"), (2, "BasicMember"), (3, "Identifier")],
    "cleo": [(1, "Identifier"), (1, "MLDataManager")],
    "dan": [(3, "ProjectManager")],
}

# (project index, role) → how the Django side leaves the group: codenames removed/added, globally and on the object.
DRIFT = {
    (0, "Researcher"): {"remove": {"delete_dataexport"}, "add": {"delete_project"}},
    (1, "Identifier"): {"remove_object": {"update_identification"}, "add_global": {"run_ml_job"}},
    (2, "BasicMember"): {"remove": set(ROLES["BasicMember"])},  # an empty group, as Group.objects.get_or_create leaves it
    (3, "MLDataManager"): {"add_object": {"delete_project", "update_project"}},
}


def group_name(project, role):
    return f"{project.pk}_{project.name}_{role}"


def display_name(codename):
    declared = {p["codename"]: p["name"] for p in CATALOGUE["project_permissions"]}
    return declared.get(codename) or "Can " + codename.replace("_", " ")


class ReverseTests(CompatTestCase):
    database_label = "reverse"

    @classmethod
    def populate(cls):
        db = cls.db
        support.run_migrator(db, "--skip-roles")
        cls.tables_before_django = support.tables(db)
        assert support.query(db, "SELECT count(*) FROM auth_group")[0][0] == 0
        # --skip-roles installs none of the role sync's objects, so no role version is stored.
        assert support.query(db, "SELECT to_regclass('migrator.role_version') IS NULL")[0][0]
        support.use_database(db)

        # Permissions: what Django's migrate makes (its post_migrate create_permissions; for main: Meta.permissions and
        # the default add/change/delete/view), then the reference app's get_or_create for the role codenames besides.
        for app_config in apps.get_app_configs():
            create_permissions(app_config, verbosity=0)
        ct = ContentType.objects.get_for_model(Project)
        for codename in sorted(ALL_CODENAMES):
            Permission.objects.get_or_create(codename=codename, content_type=ct, defaults={"name": display_name(codename)})

        projects = [Project.objects.create(name=name) for name in PROJECT_NAMES]
        cls.project_ids = [project.pk for project in projects]
        users = {name: User.objects.create_user(username=name) for name in [*MEMBERSHIPS, "outsider"]}
        cls.user_ids = {name: user.pk for name, user in users.items()}

        cls.drifted_before = {}
        for index, project in enumerate(projects):
            for role, codenames in ROLES.items():
                group = Group.objects.create(name=group_name(project, role))
                perms = list(Permission.objects.filter(content_type=ct, codename__in=codenames))
                group.permissions.add(*perms)
                for perm in perms:
                    assign_perm(perm, group, project)
                drift = DRIFT.get((index, role))
                if drift:
                    for codename in drift.get("remove", set()) | drift.get("remove_object", set()):
                        remove_perm(f"main.{codename}", group, project)
                    for codename in drift.get("remove", set()) | drift.get("remove_global", set()):
                        group.permissions.remove(Permission.objects.get(content_type=ct, codename=codename))
                    for codename in drift.get("add", set()) | drift.get("add_object", set()):
                        assign_perm(f"main.{codename}", group, project)
                    for codename in drift.get("add", set()) | drift.get("add_global", set()):
                        group.permissions.add(Permission.objects.get(content_type=ct, codename=codename))
                    cls.drifted_before[group.pk] = (
                        set(get_perms(group, project)),
                        set(Group.objects.get(pk=group.pk).permissions.values_list("codename", flat=True)),
                    )

        # Rows that are not migrator's.
        view_group = Permission.objects.get(content_type__app_label="auth", codename="view_group")
        reviewers = Group.objects.create(name="Reviewers")
        reviewers.permissions.add(Permission.objects.get(content_type=ct, codename="view_project"), view_group)
        assign_perm("main.view_project", reviewers, projects[0])
        first_basic = Group.objects.get(name=group_name(projects[0], "BasicMember"))
        assign_perm("main.view_project", first_basic, projects[1])  # a grant on another project
        first_basic.permissions.add(view_group)  # a global permission of another content type
        assign_perm("main.update_project", users["outsider"], projects[2])  # a user object permission
        users["outsider"].groups.add(reviewers)
        cls.foreign = {"project_grant": (first_basic.pk, projects[1].pk), "user_grant": (users["outsider"].pk, projects[2].pk)}

        for username, memberships in MEMBERSHIPS.items():
            for index, role in memberships:
                users[username].groups.add(Group.objects.get(name=group_name(projects[index], role)))

        cls.before = cls.snapshot()
        support.run_migrator(db)
        support.use_database(db)
        cls.after = cls.snapshot()

    @classmethod
    def snapshot(cls):
        db = cls.db
        ct_id = support.query(db, "SELECT id FROM django_content_type WHERE app_label = 'main' AND model = 'project'")[0][0]
        return {
            "groups": dict(support.query(db, "SELECT name, id FROM auth_group")),
            "memberships": set(support.query(db, "SELECT user_id, group_id FROM users_user_groups")),
            "project_permissions": set(
                support.query(db, "SELECT id, codename, name FROM auth_permission WHERE content_type_id = %s", (ct_id,))
            ),
            # Before migrator's first sync its link table does not exist yet (--skip-roles installs nothing of it).
            "links": set(support.query(db, "SELECT project_id, role, group_id FROM migrator.project_role_group"))
            if support.query(db, "SELECT to_regclass('migrator.project_role_group') IS NOT NULL")[0][0]
            else set(),
            # Everything that is not a role group's permission on its own project for main.project:
            "foreign_global": set(
                support.query(
                    db,
                    """SELECT g.name, p.codename FROM auth_group_permissions x JOIN auth_group g ON g.id = x.group_id
                       JOIN auth_permission p ON p.id = x.permission_id
                       WHERE p.content_type_id <> %s OR g.name = 'Reviewers'""",
                    (ct_id,),
                )
            ),
            "foreign_object": set(
                support.query(
                    db,
                    """SELECT g.name, x.object_pk, p.codename FROM guardian_groupobjectpermission x
                       JOIN auth_group g ON g.id = x.group_id JOIN auth_permission p ON p.id = x.permission_id
                       WHERE g.name = 'Reviewers' OR NOT g.name LIKE x.object_pk || '\\_%%'""",
                )
            ),
            "user_object": set(
                support.query(db, "SELECT user_id, object_pk, permission_id, content_type_id FROM guardian_userobjectpermission")
            ),
        }

    def project(self, index):
        return Project.objects.get(pk=self.project_ids[index])

    def test_django_created_no_table(self):
        """Django ran no migrate: the tables are the ones `migrator migrate --skip-roles` made."""
        tables = support.tables(self.db)
        self.assertNotIn("django_migrations", tables)
        self.assertSetEqualExplained(tables, self.tables_before_django, "tables after the Django side and migrator ran")

    def test_no_group_is_duplicated_and_every_id_is_kept(self):
        """auth_group is the same rows (names and ids) before and after; migrator links exactly Django's groups."""
        self.assertSetEqualExplained(self.after["groups"].items(), self.before["groups"].items(), "auth_group (name, id)")
        self.assertEqual(len(self.before["groups"]), len(PROJECT_NAMES) * len(ROLES) + 1)
        expected_links = {
            (pk, role, self.before["groups"][group_name(self.project(index), role)])
            for index, pk in enumerate(self.project_ids)
            for role in ROLES
        }
        self.assertSetEqualExplained(self.after["links"], expected_links, "migrator.project_role_group")
        for pk in self.project_ids:
            project = Project.objects.get(pk=pk)
            for role in ROLES:
                self.assertEqual(Group.objects.filter(name=group_name(project, role)).count(), 1)
        created, projects = support.query(
            self.db, "SELECT groups_created, projects FROM migrator.role_version ORDER BY id DESC LIMIT 1"
        )[0]
        self.assertEqual((created, projects), (0, len(PROJECT_NAMES)), "groups_created, projects of the sync")

    def test_memberships_stay(self):
        """Every users_user_groups row Django made is still there, and no other appeared."""
        self.assertEqual(len(self.before["memberships"]), sum(len(m) for m in MEMBERSHIPS.values()) + 1)
        self.assertSetEqualExplained(self.after["memberships"], self.before["memberships"], "users_user_groups")

    def test_permissions_afterwards_equal_the_catalogue(self):
        """get_perms(group, project) and group.permissions of every role group are exactly the role's codenames."""
        ct = ContentType.objects.get_for_model(Project)
        mismatches = []
        for index in range(len(PROJECT_NAMES)):
            project = self.project(index)
            for role, codenames in ROLES.items():
                group = Group.objects.get(name=group_name(project, role))
                on_object = set(get_perms(group, project))
                global_ = set(group.permissions.filter(content_type=ct).values_list("codename", flat=True))
                for how, actual in (("get_perms", on_object), ("group.permissions", global_)):
                    if actual != codenames:
                        mismatches.append(f"{how} {group.name}: {support.describe_difference(actual, codenames)}")
        self.assertNoMismatches(mismatches, "role group permissions after migrate")

    def test_drifted_groups_were_corrected(self):
        """The groups Django left with missing or extra permissions hold exactly their role's afterwards."""
        self.assertEqual(len(self.drifted_before), len(DRIFT))
        ct = ContentType.objects.get_for_model(Project)
        mismatches = []
        for (index, role), drift in DRIFT.items():
            project = self.project(index)
            group = Group.objects.get(name=group_name(project, role))
            on_object_before, global_before = self.drifted_before[group.pk]
            if on_object_before == ROLES[role] and global_before == ROLES[role]:
                mismatches.append(f"{group.name}: the Django side did not drift it ({drift})")
            on_object = set(get_perms(group, project))
            global_ = set(group.permissions.filter(content_type=ct).values_list("codename", flat=True))
            if on_object != ROLES[role] or global_ != ROLES[role]:
                mismatches.append(
                    f"{group.name}: on the project {support.describe_difference(on_object, ROLES[role])}; "
                    f"global {support.describe_difference(global_, ROLES[role])}"
                )
        self.assertNoMismatches(mismatches, "drifted groups")

    def test_users_have_their_roles_permissions(self):
        """user.has_perm("main.<codename>", project) afterwards: their roles' codenames on that project, plus the
        outsider's own user object permission, nothing else."""
        mismatches = []
        for username in [*MEMBERSHIPS, "outsider"]:
            for index, pk in enumerate(self.project_ids):
                expected = frozenset().union(
                    *(ROLES[role] for i, role in MEMBERSHIPS.get(username, []) if i == index)
                )
                if username == "outsider":
                    expected = {"update_project"} if index == 2 else {"view_project"} if index == 0 else set()
                user = User.objects.get(pk=self.user_ids[username])
                project = Project.objects.get(pk=pk)
                actual = {codename for codename in ALL_CODENAMES if user.has_perm(f"main.{codename}", project)}
                if actual != expected:
                    mismatches.append(f"{username} on project {pk}: {support.describe_difference(actual, expected)}")
        self.assertNoMismatches(mismatches, "user.has_perm(perm, project) after migrate")

    def test_rows_that_are_not_migrators_stay(self):
        """The Reviewers group's permissions, a role group's grants on another project and on another content type,
        and the user object permission are untouched."""
        for key in ("foreign_global", "foreign_object", "user_object"):
            self.assertSetEqualExplained(self.after[key], self.before[key], key)
        self.assertIn(("Reviewers", "view_group"), self.after["foreign_global"])
        self.assertIn(("Reviewers", str(self.project_ids[0]), "view_project"), self.after["foreign_object"])
        first_basic = group_name(self.project(0), "BasicMember")
        self.assertIn((first_basic, "view_group"), self.after["foreign_global"])
        self.assertIn((first_basic, str(self.project_ids[1]), "view_project"), self.after["foreign_object"])
        self.assertEqual(len(self.after["user_object"]), 1)

    def test_permission_rows_are_djangos_own(self):
        """The main.project auth_permission rows Django made (ids, codenames, names) are the same afterwards: none
        duplicated, none renamed; add_project and change_project, in no role, stay."""
        self.assertSetEqualExplained(self.after["project_permissions"], self.before["project_permissions"], "auth_permission")
        codenames = [codename for _, codename, _ in self.after["project_permissions"]]
        self.assertEqual(len(codenames), len(set(codenames)))
        self.assertSetEqualExplained(set(codenames), ALL_CODENAMES | {"add_project", "change_project"}, "codenames")
