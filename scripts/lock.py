"""Regenerate the uv.lock every bake ships (run by `make lock`; `make lock UPGRADE=1` also
moves every package to its newest allowed version).

Bakes the default answers, runs `uv lock` there (starting from the current lock, so versions
move only when pyproject.toml asks for it or on --upgrade), and writes the result back as
`{{cookiecutter.project_slug}}/uv.lock` with the project's name templated. The template
suite checks every bake's lock against its pyproject.toml (`uv lock --check`), offline.
"""

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
TEMPLATE_LOCK = TEMPLATE / "{{cookiecutter.project_slug}}" / "uv.lock"
UV = Path(sys.executable).parent / "uv"
SLUG_VARIABLE = "{{ cookiecutter.project_slug }}"


def templated(lock: str, slug: str) -> str:
    """The lock with the baked project's name replaced by the template variable."""
    if re.search(r"\{[{%#]", lock):
        raise SystemExit("lock: uv.lock holds Jinja syntax ({{, {% or {#): it cannot be templated")
    project_entry = f'[[package]]\nname = "{slug}"\nversion = '
    if lock.count(project_entry) != 1 or lock.count(f'"{slug}"') != 1:
        raise SystemExit(f"lock: expected the project {slug!r} once in uv.lock")
    return lock.replace(f'"{slug}"', f'"{SLUG_VARIABLE}"')


def main(argv: list[str] | None = None) -> int:
    """Bake, lock, write the templated lock back; print what changed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="newest allowed versions")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=tmp))
        slug = project.name
        argv = [str(UV), "lock", *(["--upgrade"] if args.upgrade else [])]
        subprocess.run(argv, cwd=project, check=True)
        new = templated((project / "uv.lock").read_text(), slug)
    old = TEMPLATE_LOCK.read_text() if TEMPLATE_LOCK.exists() else ""
    if new == old:
        print(f"{TEMPLATE_LOCK.relative_to(TEMPLATE)} is current")
        return 0
    TEMPLATE_LOCK.write_text(new)
    print(f"Wrote {TEMPLATE_LOCK.relative_to(TEMPLATE)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
