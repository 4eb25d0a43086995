"""The source the rehearsal builds: the git commit, and the files a pipeline's Source
action would hand to CodeBuild. Only read-only git commands are used.
"""

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT_SECONDS = 30
# git revision suffix: the commit an object name points at (fails for a non-commit).
PEEL_COMMIT = "^{commit}"


class SourceError(RuntimeError):
    """The repository cannot be rehearsed as it is; the message says why and what to do."""


@dataclass(frozen=True)
class GitRepository:
    """Read-only questions to the git repository at root."""

    root: Path

    def _git(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                ["git", *args],
                cwd=self.root,
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT_SECONDS,
                check=False,
            )
        except FileNotFoundError as error:
            raise SourceError("git is not installed: the rehearsal needs it") from error

    def head(self) -> str:
        """The commit HEAD points at; SourceError outside a repository or before a commit."""
        result = self._git("rev-parse", "--verify", "HEAD" + PEEL_COMMIT)
        if result.returncode != 0:
            raise SourceError(
                f"{self.root} is not a git repository with a commit: run `git init` and commit,"
                " the pipelines build commits"
            )
        return result.stdout.strip()

    def branch_head(self, branch: str) -> str | None:
        """The commit a local branch points at, or None when there is no such branch."""
        result = self._git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}" + PEEL_COMMIT)
        return result.stdout.strip() if result.returncode == 0 else None

    def commit_exists(self, commit: str) -> bool:
        """Whether the commit is in the repository."""
        return self._git("cat-file", "-e", commit + PEEL_COMMIT).returncode == 0

    def resolve(self, specifier: str) -> str | None:
        """A branch name or a commit id as a full commit id, or None."""
        return self.branch_head(specifier) or (
            self._git("rev-parse", "--verify", "--quiet", specifier + PEEL_COMMIT).stdout.strip()
            or None
        )

    def merge_base(self, first: str, second: str) -> str | None:
        """The best common ancestor of two commits, or None when they share none."""
        result = self._git("merge-base", first, second)
        return result.stdout.strip() if result.returncode == 0 else None

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether ancestor is descendant or one of its ancestors."""
        return self._git("merge-base", "--is-ancestor", ancestor, descendant).returncode == 0

    def count_commits(self, exclusive_from: str, to: str) -> int:
        """How many commits `to` has that `exclusive_from` has not."""
        result = self._git("rev-list", "--count", f"{exclusive_from}..{to}")
        return int(result.stdout.strip() or 0) if result.returncode == 0 else 0

    def commit_field(self, commit: str, pretty_format: str) -> str:
        """One field of a commit (`git show -s --format=...`)."""
        return self._git("show", "-s", f"--format={pretty_format}", commit).stdout.strip()

    def tree(self, commit: str) -> str:
        """The tree id of a commit."""
        return self.commit_field(commit, "%T")

    def is_dirty(self) -> bool:
        """Whether the working tree differs from HEAD (ignored files aside)."""
        return bool(self._git("status", "--porcelain", "--untracked-files=normal").stdout.strip())

    def source_files(self) -> list[str]:
        """Files a commit of the working tree would hold: tracked and not-ignored untracked
        ones that exist (so uncommitted edits are rehearsed, ignored outputs are not)."""
        result = self._git("ls-files", "-z", "--cached", "--others", "--exclude-standard")
        if result.returncode != 0:
            raise SourceError(f"git ls-files failed in {self.root}: {result.stderr.strip()}")
        names = sorted({name for name in result.stdout.split("\0") if name})
        return [name for name in names if (self.root / name).is_file()]


def snapshot(repository: GitRepository, destination: Path) -> int:
    """Copy the working tree's source files into destination (a Source action's output
    artifact: no .git, no ignored files); how many files were copied."""
    files = repository.source_files()
    for name in files:
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repository.root / name, target)
    return len(files)


def copy_tree(source: Path, destination: Path) -> None:
    """A fresh copy of an artifact folder, for one action to work in."""
    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(source, destination, symlinks=True)
