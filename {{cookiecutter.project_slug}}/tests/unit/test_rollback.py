"""The `rollback` command (`make rollback`) on a real git repository with a few commits since
production."""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }} import config
from {{ cookiecutter.__ops_package_name }} import cli, rollback

ROOT = Path(__file__).resolve().parents[2]
DEV = config.DEV_BRANCH
MAIN = config.MAIN_BRANCH
# A topic branch merged into dev (named after dev, so it cannot clash with either branch).
TOPIC = f"{DEV}-topic"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def git(repo: Path, *args: str) -> str:
    """Run git in the test repository; its output."""
    result = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **GIT_IDENTITY},
    )
    return result.stdout.strip()


def commit(repo: Path, message: str, **files: str) -> str:
    """Write the files, commit them, return the commit id."""
    for name, content in files.items():
        path = repo / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Production on the main branch; dev three commits ahead (one a merged branch)."""
    repo = tmp_path_factory.mktemp("rollback") / "project"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch", MAIN)
    commit(repo, "Initial model", **{"params.txt": "depth=4\n", "src__train.py": "v1\n"})
    git(repo, "branch", DEV)
    git(repo, "switch", "--quiet", DEV)
    commit(repo, "Deeper trees", **{"params.txt": "depth=8\n"})
    git(repo, "switch", "--quiet", "-c", TOPIC)
    commit(repo, "New feature column", **{"src__features.py": "extra\n"})
    git(repo, "switch", "--quiet", DEV)
    git(repo, "merge", "--quiet", "--no-ff", "-m", "Merge feature", TOPIC)
    return repo


@pytest.fixture
def repo(history: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of that history for one test to change (made once: a dozen git commands)."""
    for name, value in GIT_IDENTITY.items():
        monkeypatch.setenv(name, value)
    return Path(shutil.copytree(history, tmp_path / "project", symlinks=True))


def run(capsys: pytest.CaptureFixture, repo: Path, *args: str) -> tuple[int, str, str]:
    status = cli.main(["rollback", "--repo", str(repo), *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_dry_run_lists_what_would_be_undone_and_writes_nothing(capsys, repo):
    before = git(repo, "rev-parse", DEV)
    production = git(repo, "rev-parse", MAIN)
    status, out, _ = run(capsys, repo)
    assert status == 0
    assert f"Production runs {production[:12]} ({MAIN}): Initial model" in out
    for subject in ("Deeper trees", "New feature column", "Merge feature"):
        assert subject in out
    assert "  params.txt" in out and "  src/features.py" in out
    assert f"make rollback CONFIRM={production[:7]}" in out
    assert git(repo, "rev-parse", DEV) == before
    assert git(repo, "status", "--porcelain") == ""


def test_confirmed_rollback_adds_one_commit_with_productions_files(capsys, repo):
    old_dev = git(repo, "rev-parse", DEV)
    production = git(repo, "rev-parse", MAIN)
    status, out, _ = run(capsys, repo, "--confirm", production[:7])
    assert status == 0
    new_dev = git(repo, "rev-parse", DEV)
    assert f"Wrote {new_dev[:12]} on {DEV}" in out
    # One commit on top of dev, history kept: a push, never a force-push.
    assert git(repo, "rev-parse", f"{new_dev}^") == old_dev
    assert git(repo, "rev-parse", new_dev + "^{tree}") == git(
        repo, "rev-parse", production + "^{tree}"
    )
    # Production's commit stays an ancestor: the deploy pipeline accepts the rebuilt model.
    git(repo, "merge-base", "--is-ancestor", production, new_dev)
    assert (repo / "params.txt").read_text() == "depth=4\n"
    assert not (repo / "src" / "features.py").exists()
    message = git(repo, "log", "-1", "--format=%B")
    assert message.startswith(f"Roll back to production {production[:12]}")
    assert "Deeper trees" in message and "New feature column" in message


@pytest.mark.parametrize("confirm", ["0000000", "abc", "HEAD"])
def test_a_wrong_confirmation_changes_nothing(capsys, repo, confirm):
    before = git(repo, "rev-parse", DEV)
    status, _, err = run(capsys, repo, "--confirm", confirm)
    assert status == 2
    assert err.count("\n") == 1 and "does not name production's commit" in err
    assert git(repo, "rev-parse", DEV) == before


def test_refuses_a_dirty_tree_and_another_branch(capsys, repo):
    production = git(repo, "rev-parse", MAIN)
    (repo / "params.txt").write_text("depth=16\n")
    status, _, err = run(capsys, repo, "--confirm", production)
    assert status == 2 and "not clean" in err
    git(repo, "checkout", "--quiet", "--", "params.txt")
    git(repo, "switch", "--quiet", TOPIC)
    status, _, err = run(capsys, repo, "--confirm", production)
    assert status == 2 and f"check out {DEV} first" in err


def test_refuses_when_dev_does_not_contain_production(capsys, repo):
    git(repo, "switch", "--quiet", MAIN)
    commit(repo, "Hotfix straight on main", **{"params.txt": "depth=5\n"})
    git(repo, "switch", "--quiet", DEV)
    status, _, err = run(capsys, repo)
    assert status == 2
    assert f"merge {MAIN} into {DEV} first" in err


def test_nothing_to_roll_back_when_dev_has_productions_files(capsys, repo):
    production = git(repo, "rev-parse", MAIN)
    assert run(capsys, repo, "--confirm", production)[0] == 0
    status, out, _ = run(capsys, repo)
    assert status == 0 and "Nothing to roll back" in out
    status, _, err = run(capsys, repo, "--confirm", production)
    assert status == 2 and "nothing to roll back" in err


def test_a_missing_production_ref_says_how_to_get_it(capsys, repo):
    status, _, err = run(capsys, repo, "--production-ref", "origin/missing")
    assert status == 2
    assert "no production ref 'origin/missing'" in err and "git fetch" in err
    assert "make rollback PRODUCTION_REF=<name>" in err


def test_dry_run_says_what_happens_to_each_file(capsys, repo):
    # Since production, dev changed params.txt, added src/features.py and now deletes
    # src/train.py.
    git(repo, "rm", "--quiet", "src/train.py")
    git(repo, "commit", "--quiet", "-m", "Drop the old trainer")
    status, out, _ = run(capsys, repo)
    assert status == 0
    assert (
        "Files it restores to production's version (1):\n  params.txt\n"
        f"Files it re-adds (deleted on {DEV} since production) (1):\n  src/train.py\n"
        f"Files it removes (added on {DEV} since production) (1):\n  src/features.py\n"
    ) in out
    production = git(repo, "rev-parse", MAIN)
    assert run(capsys, repo, "--confirm", production)[0] == 0
    assert (repo / "params.txt").read_text() == "depth=4\n"
    assert (repo / "src" / "train.py").read_text() == "v1\n"
    assert not (repo / "src" / "features.py").exists()


def test_the_confirm_command_keeps_the_refs_the_dry_run_was_given(capsys, repo):
    production = git(repo, "rev-parse", MAIN)
    git(repo, "branch", "hotfix-base", DEV)
    git(repo, "switch", "--quiet", "hotfix-base")
    ref = f"refs/heads/{MAIN}"
    status, out, _ = run(capsys, repo, "--production-ref", ref, "--dev-branch", "hotfix-base")
    assert status == 0
    command = f"make rollback PRODUCTION_REF={ref} DEV_BRANCH=hotfix-base CONFIRM={production[:7]}"
    assert out.splitlines()[-1] == f"To write it: {command}"


needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make_rollback(repo: Path, *variables: str) -> subprocess.CompletedProcess:
    """`make rollback` with the project's Makefile, committed into the test repository."""
    if not (repo / "Makefile").exists():
        shutil.copy(ROOT / "Makefile", repo / "Makefile")
        shutil.copytree(ROOT / "infra", repo / "infra", ignore=shutil.ignore_patterns("*.yml"))
        commit(repo, "Add the Makefile")
    command = ["make", "--no-print-directory", "-C", str(repo), "rollback"]
    return subprocess.run(
        [*command, f"PYTHON={sys.executable}", *variables],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        check=False,
    )


@needs_make
def test_make_rollback_dry_run_then_confirm(repo):
    dry = make_rollback(repo)
    assert dry.returncode == 0, dry.stderr
    production = git(repo, "rev-parse", MAIN)
    # The command make echoes is whole: it can be copied and run again.
    echoed = dry.stdout.splitlines()[0]
    assert not echoed.endswith("\\")
    assert shlex.split(echoed) == [
        sys.executable,
        "-m",
        rollback.__package__,
        "rollback",
        "--production-ref",
        MAIN,
        "--dev-branch",
        DEV,
    ]
    assert f"make rollback CONFIRM={production[:7]}" in dry.stdout
    confirmed = make_rollback(repo, f"CONFIRM={production[:7]}")
    assert confirmed.returncode == 0, confirmed.stderr
    assert (repo / "params.txt").read_text() == "depth=4\n"


@needs_make
def test_make_rollback_takes_the_variables_its_errors_name(repo):
    missing = make_rollback(repo, "DEV_BRANCH=no-such-branch")
    assert missing.returncode != 0
    assert "no dev branch 'no-such-branch'" in missing.stderr
    assert "make rollback DEV_BRANCH=<name>" in missing.stderr
    missing = make_rollback(repo, "PRODUCTION_REF=origin/missing")
    assert missing.returncode != 0
    assert "make rollback PRODUCTION_REF=<name>" in missing.stderr
