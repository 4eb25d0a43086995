"""cruft, which keeps a generated repo up to date with the template, bakes the same tree."""

import json
import subprocess
from pathlib import Path

from conftest import BIN, TEMPLATE
from cookiecutter.main import cookiecutter


def tree(project: Path) -> dict[str, bytes]:
    """Relative path -> content of every file outside .git."""
    return {
        p.relative_to(project).as_posix(): p.read_bytes()
        for p in sorted(project.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(project).parts
    }


def test_cruft_create_matches_cookiecutter(tmp_path):
    # cruft clones the template from git, so both tools bake the same committed tree.
    template = tmp_path / "template"
    subprocess.run(["git", "clone", "--quiet", str(TEMPLATE), str(template)], check=True)
    plain = Path(cookiecutter(str(template), no_input=True, output_dir=str(tmp_path / "plain")))
    created = subprocess.run(
        [
            str(BIN / "cruft"),
            "create",
            "--no-input",
            "--output-dir",
            str(tmp_path / "cruft"),
            str(template),
        ],
        capture_output=True,
        text=True,
    )
    assert created.returncode == 0, created.stderr
    with_cruft = tmp_path / "cruft" / plain.name
    cruft_tree = tree(with_cruft)
    cruft_state = json.loads(cruft_tree.pop(".cruft.json"))
    assert cruft_tree == tree(plain)
    assert cruft_state["context"]["cookiecutter"]["project_slug"] == plain.name
    checked = subprocess.run(
        [str(BIN / "cruft"), "check"], cwd=with_cruft, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
