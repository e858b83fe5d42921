"""Forward: migrator writes the role groups and permissions; Django + guardian read them.

Database: `migrator migrate --skip-roles` (the tables), five projects and six users made with the ORM, then
`migrator migrate` (the first role sync: every project's groups and permissions); a sixth project made afterwards and
synced with `migrator update-roles --project-id` (the path the daemon takes). Users join role groups the way the
reference app's Role.assign_user does: the group named `{project.pk}_{project.name}_{Role}`, `user.groups.add`.
"""

from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from guardian.core import ObjectPermissionChecker
from guardian.shortcuts import get_objects_for_user, get_perms

from main.models import Project
from users.models import User

from . import support
from .support import ALL_CODENAMES, COMMON_CODENAMES, ROLES, CompatTestCase

PROJECT_NAMES = [
    "Moth Survey",
    "O'Brien's \"Night\" Traps; DROP TABLE main_project; --",
    "Québec — papillons de nuit, ü ß 🦋",
    "日本の蛾 調査",
    "Moth Survey",  # the same name as the first: the id keeps the group names apart
]
# Made after the first sync; 80 characters (main_project.name's limit) and ending like a role.
LATE_PROJECT_NAME = "x" * 69 + "_Researcher"

# user → [(index into the projects, role)]
MEMBERSHIPS = {
    "alice": [(0, "BasicMember"), (1, "ProjectManager")],
    "bob": [(0, "Researcher"), (0, "Identifier"), (3, "MLDataManager")],
    "carol": [(2, "Identifier"), (4, "BasicMember"), (5, "Researcher")],
    "dave": [(5, "ProjectManager"), (1, "BasicMember")],
    "frank": [(3, "ProjectManager"), (3, "BasicMember"), (2, "MLDataManager")],
    "erin": [],  # no role anywhere
}


def reference_group_name(project, role):
    """The reference app's Role.get_group_name."""
    return f"{project.pk}_{project.name}_{role}"


class ForwardTests(CompatTestCase):
    database_label = "forward"

    @classmethod
    def populate(cls):
        support.run_migrator(cls.db, "--skip-roles")
        cls.tables_before_django = support.tables(cls.db)
        support.use_database(cls.db)
        cls.user_ids = {name: User.objects.create_user(username=name).pk for name in MEMBERSHIPS}
        projects = [Project.objects.create(name=name) for name in PROJECT_NAMES]
        support.run_migrator(cls.db)
        projects.append(Project.objects.create(name=LATE_PROJECT_NAME))
        support.run_migrator(cls.db, "--project-id", str(projects[-1].pk), command="update-roles")
        cls.project_ids = [project.pk for project in projects]
        cls.projects = {project.pk: project for project in Project.objects.all()}
        assert set(cls.projects) == set(cls.project_ids)
        for username, memberships in MEMBERSHIPS.items():
            user = User.objects.get(username=username)
            for index, role in memberships:
                user.groups.add(Group.objects.get(name=reference_group_name(projects[index], role)))
        # user → project id → the codenames their roles grant there
        cls.expected = {
            username: {
                pk: frozenset().union(*(ROLES[role] for index, role in memberships if cls.project_ids[index] == pk))
                for pk in cls.project_ids
            }
            for username, memberships in MEMBERSHIPS.items()
        }

    def role_group(self, pk, role):
        """The group migrator.project_role_group links (the name is checked on its own)."""
        group_id = support.query(
            self.db, "SELECT group_id FROM migrator.project_role_group WHERE project_id = %s AND role = %s", (pk, role)
        )[0][0]
        return Group.objects.get(pk=group_id)

    def fresh_user(self, username):
        """A user read anew: Django and guardian cache permissions on the user object."""
        return User.objects.get(pk=self.user_ids[username])

    def users_projects(self, username, codename=None):
        return {pk for pk, codenames in self.expected[username].items() if codenames and (codename is None or codename in codenames)}

    def test_django_created_no_table(self):
        """Django ran no migrate: the tables are the ones `migrator migrate` made, and no django_migrations."""
        tables = support.tables(self.db)
        self.assertNotIn("django_migrations", tables)
        self.assertSetEqualExplained(tables, self.tables_before_django, "tables after the Django side ran")

    def test_role_groups_are_found_by_the_reference_apps_group_names(self):
        """Every project has one group per role, named {id}_{name}_{Role}, the one migrator.project_role_group links."""
        links = {
            (project_id, role): group_id
            for project_id, role, group_id in support.query(self.db, "SELECT project_id, role, group_id FROM migrator.project_role_group")
        }
        mismatches = []
        for pk, project in self.projects.items():
            for role in ROLES:
                found = list(Group.objects.filter(name=reference_group_name(project, role)).values_list("pk", flat=True))
                if found != [links.get((pk, role))]:
                    mismatches.append(f"project {pk} {role}: groups by name {found}, linked {links.get((pk, role))}")
        self.assertNoMismatches(mismatches, "role groups")
        self.assertEqual(len(links), len(self.projects) * len(ROLES))
        self.assertEqual(Group.objects.count(), len(self.projects) * len(ROLES))

    def test_get_perms_of_every_role_group_equals_the_roles_codenames(self):
        """guardian.shortcuts.get_perms(group, project) is the role's codenames on its project, nothing elsewhere."""
        mismatches = []
        for index, pk in enumerate(self.project_ids):
            project = self.projects[pk]
            other = self.projects[self.project_ids[(index + 1) % len(self.project_ids)]]
            for role, codenames in ROLES.items():
                group = self.role_group(pk, role)
                actual = set(get_perms(group, project))
                if actual != codenames:
                    mismatches.append(f"{group.name}: {support.describe_difference(actual, codenames)}")
                elsewhere = set(get_perms(group, other))
                if elsewhere:
                    mismatches.append(f"{group.name} on project {other.pk}: unexpected {sorted(elsewhere)}")
        self.assertNoMismatches(mismatches, "get_perms(group, project)")

    def test_global_permissions_of_every_role_group_equal_the_roles_codenames(self):
        """group.permissions (auth_group_permissions, as the reference app adds them) holds the role's codenames."""
        ct = ContentType.objects.get_for_model(Project)
        mismatches = []
        for pk in self.project_ids:
            for role, codenames in ROLES.items():
                group = self.role_group(pk, role)
                actual = set(group.permissions.values_list("codename", flat=True))
                if actual != codenames or group.permissions.exclude(content_type=ct).exists():
                    mismatches.append(f"{group.name}: {support.describe_difference(actual, codenames)}")
        self.assertNoMismatches(mismatches, "group.permissions")

    def test_user_has_perm_exactly_for_their_roles_on_that_project(self):
        """user.has_perm("main.<codename>", project) for every catalogue codename, user and project: true exactly for
        the codenames of the user's roles on that project, false on projects where they hold no role."""
        mismatches = []
        checked = 0
        for username in MEMBERSHIPS:
            for pk, expected in self.expected[username].items():
                user = self.fresh_user(username)
                for codename in sorted(ALL_CODENAMES):
                    checked += 1
                    actual = user.has_perm(f"main.{codename}", self.projects[pk])
                    if actual != (codename in expected):
                        mismatches.append(f"{username} main.{codename} on project {pk}: {actual}, expected {not actual}")
        self.assertEqual(checked, len(MEMBERSHIPS) * len(self.project_ids) * len(ALL_CODENAMES))
        self.assertNoMismatches(mismatches, "user.has_perm(perm, project)")

    def test_get_perms_and_prefetched_checker_of_each_user(self):
        """get_perms(user, project) and a prefetching ObjectPermissionChecker give the union of the user's roles."""
        mismatches = []
        projects = list(self.projects.values())
        for username in MEMBERSHIPS:
            checker = ObjectPermissionChecker(self.fresh_user(username))
            checker.prefetch_perms(projects)
            for pk, expected in self.expected[username].items():
                for how, actual in (
                    ("get_perms", set(get_perms(self.fresh_user(username), self.projects[pk]))),
                    ("prefetched checker", set(checker.get_perms(self.projects[pk]))),
                ):
                    if actual != expected:
                        mismatches.append(f"{how} {username} project {pk}: {support.describe_difference(actual, expected)}")
        self.assertNoMismatches(mismatches, "the user's object permissions")

    def test_get_objects_for_user_returns_exactly_the_users_projects(self):
        """get_objects_for_user(..., accept_global_perms=False): for a codename every role grants, the user's
        projects; for any one catalogue codename, the projects where a role of theirs grants it; for all codenames
        with any_perm, the user's projects."""
        self.assertIn("view_project", COMMON_CODENAMES)
        mismatches = []
        for username in MEMBERSHIPS:
            user = self.fresh_user(username)
            cases = [(f"any of {len(ALL_CODENAMES)} codenames", sorted(f"main.{c}" for c in ALL_CODENAMES), True, None)]
            cases += [(f"main.{c}", f"main.{c}", False, c) for c in sorted(ALL_CODENAMES)]
            for label, perms, any_perm, codename in cases:
                actual = set(
                    get_objects_for_user(user, perms, klass=Project, any_perm=any_perm, accept_global_perms=False)
                    .values_list("pk", flat=True)
                )
                expected = self.users_projects(username, codename)
                if actual != expected:
                    mismatches.append(f"{username} {label}: {support.describe_difference(actual, expected)}")
        self.assertNoMismatches(mismatches, "get_objects_for_user(accept_global_perms=False)")
        self.assertEqual(self.users_projects("erin"), set())

    def test_reference_design_global_group_permissions_widen_default_lookups(self):
        """Not a migrator choice but the reference app's: a role group also holds its codenames as global
        permissions, so with guardian's defaults (accept_global_perms=True) and Django's ModelBackend a user with any
        role anywhere has those codenames for every project. Pinned here so that a change shows."""
        all_projects = set(self.project_ids)
        mismatches = []
        for username, memberships in MEMBERSHIPS.items():
            global_codenames = frozenset().union(*(ROLES[role] for _, role in memberships))
            user = self.fresh_user(username)
            for codename in sorted(ALL_CODENAMES):
                actual = set(get_objects_for_user(user, f"main.{codename}", klass=Project).values_list("pk", flat=True))
                expected = all_projects if codename in global_codenames else self.users_projects(username, codename)
                if actual != expected:
                    mismatches.append(f"{username} main.{codename}: {support.describe_difference(actual, expected)}")
                has_global = self.fresh_user(username).has_perm(f"main.{codename}")
                if has_global != (codename in global_codenames):
                    mismatches.append(f"{username} has_perm(main.{codename}) without an object: {has_global}")
        self.assertNoMismatches(mismatches, "get_objects_for_user with global permissions accepted")
