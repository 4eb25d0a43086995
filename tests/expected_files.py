"""The exact file set of a bake, for each combination of answers."""

# Files every bake has, whatever the answers (package folder written as <pkg>).
COMMON = """
.gitignore
.pre-commit-config.yaml
Makefile
pyproject.toml
infra/infra.mk
src/<pkg>/__init__.py
src/<pkg>/config.py
tests/conftest.py
""".split()

# Files only some answers produce: (answer, value) -> files.
CONDITIONAL: dict[tuple[str, object], list[str]] = {}


def expected_files(choices: dict, package: str = "churn_model") -> set[str]:
    """The relative paths a bake with these choices must contain, and nothing else."""
    names = list(COMMON)
    for (variable, value), files in CONDITIONAL.items():
        if choices.get(variable) == value:
            names += files
    return {name.replace("<pkg>", package) for name in names}
