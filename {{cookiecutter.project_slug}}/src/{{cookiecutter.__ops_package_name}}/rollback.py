"""Roll back through git: the `rollback` command (`make rollback`).

Production runs the commit the main branch points at (the merge function moves it there
after each deployment). A rollback adds one commit on the dev branch whose tree is that
commit's tree, undoing every commit since; pushing it rebuilds (the cached steps of the
SageMaker pipeline make it fast), and the usual approval, deploy and merge restore the
previous model with the main branch still equal to production.

Without --confirm it only shows what would be undone; with --confirm <production commit>
it writes the commit on the checked-out dev branch (it never pushes).
"""

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from {{ cookiecutter.package_name }} import config

from .errors import UserError

# A --confirm value must name the production commit by at least this many hex digits.
MIN_CONFIRM_LENGTH = 7
# The make variables of `make rollback` for --production-ref and --dev-branch.
PRODUCTION_REF_VARIABLE = "PRODUCTION_REF"
DEV_BRANCH_VARIABLE = "DEV_BRANCH"


@dataclass(frozen=True)
class Plan:
    """What a rollback of the dev branch to production undoes."""

    production: str
    production_subject: str
    dev: str
    commits: list[tuple[str, str]]
    # What the rollback commit does to each file that differs, production against dev:
    restored: list[str]  # changed on dev: production's version comes back
    re_added: list[str]  # deleted on dev: production's file comes back
    removed: list[str]  # added on dev: production has no such file

    @property
    def changed_files(self) -> list[str]:
        """Every file the rollback commit changes."""
        return [*self.restored, *self.re_added, *self.removed]


def git(repo: Path, *args: str) -> str:
    """Run git in the repository; its output without the final newline."""
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
        )
    except FileNotFoundError as error:
        raise UserError("git is not installed or not on PATH") from error
    except subprocess.CalledProcessError as error:
        message = error.stderr.strip().splitlines()
        raise UserError(
            f"git {' '.join(args)} failed: {message[-1] if message else error}"
        ) from error
    return result.stdout.rstrip("\n")


def resolve(repo: Path, ref: str, what: str, variable: str) -> str:
    """The commit a ref names, or a UserError naming the ref and how to name another."""
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", ref + "^{commit}")
    except UserError as error:
        raise UserError(
            f"no {what} {ref!r} in {repo}: fetch it first (git fetch), or name another one"
            f" (make rollback {variable}=<name>)"
        ) from error


def file_changes(repo: Path, dev: str, production: str) -> tuple[list[str], list[str], list[str]]:
    """The files production's tree restores, re-adds and removes, compared to dev's."""
    # -z: paths verbatim (no quoting); --no-renames: a rename is a removal and a re-add.
    output = git(repo, "diff", "--name-status", "-z", "--no-renames", dev, production)
    fields = output.split("\0")[:-1]  # each field ends in a NUL
    restored, re_added, removed = [], [], []
    for status, path in zip(fields[0::2], fields[1::2], strict=True):
        if status == "A":  # in production's tree, not in dev's
            re_added.append(path)
        elif status == "D":  # in dev's tree, not in production's
            removed.append(path)
        else:  # M, or T (a type change): production's version comes back
            restored.append(path)
    return restored, re_added, removed


def plan(repo: Path, production_ref: str, dev_branch: str) -> Plan:
    """The commits on the dev branch since the production commit, oldest first."""
    production = resolve(repo, production_ref, "production ref", PRODUCTION_REF_VARIABLE)
    dev = resolve(repo, dev_branch, "dev branch", DEV_BRANCH_VARIABLE)
    ancestor = subprocess.run(
        ["git", "-C", str(repo), "merge-base", "--is-ancestor", production, dev],
        capture_output=True,
        check=False,
    )
    if ancestor.returncode != 0:
        raise UserError(
            f"{dev_branch} does not contain production's commit {production[:12]}"
            f" ({production_ref}): merge {production_ref} into {dev_branch} first"
        )
    log = git(repo, "log", "--reverse", "--format=%H%x09%s", f"{production}..{dev}")
    commits = []
    for line in log.splitlines():
        sha, _, subject = line.partition("\t")
        commits.append((sha, subject))
    restored, re_added, removed = file_changes(repo, dev, production)
    return Plan(
        production=production,
        production_subject=git(repo, "log", "-1", "--format=%s", production),
        dev=dev,
        commits=commits,
        restored=restored,
        re_added=re_added,
        removed=removed,
    )


def confirm_command(rollback: Plan, production_ref: str, dev_branch: str) -> str:
    """The make command that writes this rollback, with the refs the dry run was given."""
    words = ["make", "rollback"]
    if production_ref != config.MAIN_BRANCH:
        words.append(f"{PRODUCTION_REF_VARIABLE}={production_ref}")
    if dev_branch != config.DEV_BRANCH:
        words.append(f"{DEV_BRANCH_VARIABLE}={dev_branch}")
    words.append(f"CONFIRM={rollback.production[:MIN_CONFIRM_LENGTH]}")
    return shlex.join(words)


def describe(rollback: Plan, production_ref: str, dev_branch: str) -> str:
    """The dry run: what the rollback commit would undo, and how to write it."""
    lines = [
        f"Production runs {rollback.production[:12]} ({production_ref}):"
        f" {rollback.production_subject}"
    ]
    if not rollback.changed_files:
        lines.append(
            f"Nothing to roll back: {dev_branch} already has production's files"
            f" ({len(rollback.commits)} commit(s) since, none changing a file)."
        )
        return "\n".join(lines)
    lines.append(
        f"A rollback adds one commit on {dev_branch} that undoes these"
        f" {len(rollback.commits)} commit(s), newest last:"
    )
    lines += [f"  {sha[:12]} {subject}" for sha, subject in rollback.commits]
    for heading, paths in (
        ("Files it restores to production's version", rollback.restored),
        (f"Files it re-adds (deleted on {dev_branch} since production)", rollback.re_added),
        (f"Files it removes (added on {dev_branch} since production)", rollback.removed),
    ):
        if paths:
            lines.append(f"{heading} ({len(paths)}):")
            lines += [f"  {path}" for path in paths]
    lines.append(f"To write it: {confirm_command(rollback, production_ref, dev_branch)}")
    return "\n".join(lines)


def commit_message(rollback: Plan, production_ref: str) -> str:
    """The rollback commit's message: what it restores and what it undoes."""
    undone = "\n".join(f"- {sha[:12]} {subject}" for sha, subject in rollback.commits)
    return (
        f"Roll back to production {rollback.production[:12]} ({production_ref})\n\n"
        f"Restores the files of {rollback.production} ({rollback.production_subject}),"
        f" undoing:\n{undone}\n"
    )


def apply(repo: Path, rollback: Plan, production_ref: str, dev_branch: str, confirm: str) -> str:
    """Write the rollback commit on the checked-out dev branch; return its id."""
    if len(confirm) < MIN_CONFIRM_LENGTH or not rollback.production.startswith(confirm.lower()):
        raise UserError(
            f"CONFIRM={confirm!r} does not name production's commit {rollback.production[:12]}:"
            " run `make rollback` (the dry run) and copy the CONFIRM it prints"
        )
    if not rollback.changed_files:
        raise UserError(f"nothing to roll back: {dev_branch} already has production's files")
    current = git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    if current != dev_branch:
        raise UserError(f"check out {dev_branch} first (git switch {dev_branch}); on {current}")
    if git(repo, "status", "--porcelain", "--untracked-files=no"):
        raise UserError("commit or stash your changes first: the working tree is not clean")
    if git(repo, "rev-parse", "HEAD") != rollback.dev:
        raise UserError(f"{dev_branch} moved since the dry run: run `make rollback` again")
    commit = git(
        repo,
        "commit-tree",
        rollback.production + "^{tree}",
        "-p",
        rollback.dev,
        "-m",
        commit_message(rollback, production_ref),
    )
    git(repo, "merge", "--ff-only", "--quiet", commit)
    return commit
