"""The apps import one way: an app never imports from an app above it, whether the import sits
at the top of a module, inside a function, or under ``if TYPE_CHECKING``. What a lower app
must set off in a higher one goes through a listener the higher one registers in its
``ready()`` (``lifecycle.on_proposals_moved``, ``approvals.services.hooks``,
``approvals.services.recovery.on_stall_sweep``,
``policies.services.approval_rate_reader_register``), or, for a Celery task, goes by the task's
name (approvals starts executions so:
``approvals.services.lifecycle.EXECUTE_PROPOSALS``)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Lowest first; apps on one level are siblings and import neither each other.
LAYERS = [
    ["hitlproject"],
    ["audit"],
    ["access", "ledger"],
    ["policies"],
    ["approvals"],
    ["executors", "feedback"],
    ["notifications"],
]
LEVEL = {app: level for level, apps in enumerate(LAYERS) for app in apps}

# The modules that assemble every app, and so stand above them all: the root URLconf, and the
# command that seeds the demo world of every app.
ASSEMBLERS = {"hitlproject.urls", "approvals.management.commands.seed_demo"}

# Console pages that show a higher app's records beside a lower app's, and import it for
# that: each one named, with why. Anything else that runs upward fails.
CONSOLE_CROSSINGS = {
    # A proposal's page takes a person's outcome report and shows the reviewers' edits; an
    # agent's page shows its scorecards.
    ("approvals.admin", "feedback"),
    # The policy pages pick agents and action types, dry-run a proposal under a draft and
    # replay the proposals' history under it.
    ("policies.admin", "approvals"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def platform_modules() -> list[Path]:
    return sorted(
        path
        for app in LEVEL
        for path in (ROOT / app).rglob("*.py")
        if "migrations" not in path.parts
    )


def imports_of(source: str) -> list[tuple[int, str]]:
    """Every module the source imports, where (line, module): at the top, in functions, in
    ``if TYPE_CHECKING`` blocks alike; relative imports stay in their app."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def upward_imports(module: str, source: str) -> list[str]:
    """The imports of ``module`` that run to an app on its own level or above."""
    app = module.split(".")[0]
    if module in ASSEMBLERS:
        return []
    upward = []
    for line, imported in imports_of(source):
        target = imported.split(".")[0]
        if target == app or target not in LEVEL or LEVEL[target] < LEVEL[app]:
            continue
        if (module, target) in CONSOLE_CROSSINGS:
            continue
        upward.append(f"{module} (line {line}) imports {imported}: {target} is not below {app}")
    return upward


def test_every_app_imports_only_from_the_apps_below_it():
    upward = [
        finding
        for path in platform_modules()
        for finding in upward_imports(module_name(path), path.read_text())
    ]
    assert upward == [], "\n".join(upward)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("approvals.services.lifecycle", "from feedback.callbacks import x\n"),
        ("policies.services", "def f():\n    from approvals.models import Agent\n"),
        ("audit.actors", "if TYPE_CHECKING:\n    import approvals.models\n"),
        ("feedback.selectors", "from executors.models import GoogleAdsLink\n"),
        ("approvals.admin", "from notifications.models import Route\n"),
    ],
)
def test_an_import_that_runs_upward_is_named_with_its_module(module, source):
    [finding] = upward_imports(module, source)
    assert finding.startswith(f"{module} (line ")
    assert " imports " in finding


def test_the_layers_name_every_app_of_the_platform():
    apps = {path.parent.name for path in ROOT.glob("*/apps.py")} | {"hitlproject"}
    assert apps == set(LEVEL)


def task_module_imports(module: str, source: str) -> list[str]:
    """The imports of ``module`` of a tasks module (another's or its own app's)."""
    return [
        f"{module} (line {line}) imports {imported}"
        for line, imported in imports_of(source)
        if imported.split(".")[0] in LEVEL and imported.endswith(".tasks")
    ]


def test_no_module_of_the_platform_imports_a_tasks_module():
    """A tasks module is the top of its app (an id in, a service call): the services send
    its tasks by their names, so none imports it, in a function or at the top, to get
    round the tasks importing the services."""
    found = [
        finding
        for path in platform_modules()
        for finding in task_module_imports(module_name(path), path.read_text())
    ]
    assert found == [], "\n".join(found)


def test_an_import_of_a_tasks_module_in_a_function_is_named():
    [finding] = task_module_imports(
        "feedback.callbacks", "def later():\n    from feedback.tasks import deliver\n"
    )
    assert finding == "feedback.callbacks (line 2) imports feedback.tasks"
