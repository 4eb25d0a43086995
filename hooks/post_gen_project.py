"""Make the generated folder a git repository with the two GitOps branches.

Options prune themselves through conditional file names, so all that is left here is git:
`main_branch` holds the initial commit, `dev_branch` starts at the same commit and is
checked out. No network, no AWS, no push (`make bootstrap` pushes).
"""

import json
import os
import shutil
import subprocess
import sys

ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""

# Variables a calling git process (e.g. a hook) may set; they would redirect our commands
# to another repository.
GIT_CONTEXT_VARIABLES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX")


def warn(message):
    """One line on stderr; the bake itself has succeeded."""
    print(f"WARNING {message}", file=sys.stderr)


def git_environment():
    """This process's environment without a caller's git context, and no prompts."""
    env = {k: v for k, v in os.environ.items() if k not in GIT_CONTEXT_VARIABLES}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def git(*args):
    """Run one git command in the generated folder; raise CalledProcessError on failure."""
    subprocess.run(
        ["git", *args], check=True, capture_output=True, text=True, env=git_environment()
    )


def init_repository(answers):
    """git init on main_branch, one initial commit, then dev_branch checked out."""
    # The identity comes from the answers, so a machine without a git identity works too.
    identity = [
        "-c",
        f"user.name={answers['author_name']}",
        "-c",
        f"user.email={answers['author_email']}",
    ]
    git("init", "--quiet", f"--initial-branch={answers['main_branch']}")
    git("add", "--all")
    git(
        *identity,
        "-c",
        "commit.gpgsign=false",
        "commit",
        "--quiet",
        "--no-verify",
        "-m",
        f"Initial commit from cookiecutter-sagemaker-gitops ({answers['project_slug']})",
    )
    git("checkout", "--quiet", "-b", answers["dev_branch"])


def main(answers=None):
    """Initialise git when it is available; never fail the bake over git."""
    answers = json.loads(ANSWERS_JSON) if answers is None else answers
    if shutil.which("git") is None:
        warn("git is not installed: the project was generated without a git repository.")
        return 0
    try:
        init_repository(answers)
    except subprocess.CalledProcessError as error:
        detail = (error.stderr or "").strip().splitlines()
        warn(
            f"git {error.cmd[1]} failed ({detail[-1] if detail else error.returncode}): "
            "the files are generated; run git init yourself."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
