"""Make the generated folder a git repository with the two GitOps branches.

Options prune themselves through conditional file names, so all that is left here is git:
`main_branch` holds the initial commit, `dev_branch` starts at the same commit and is
checked out. No network, no AWS, no push (`make bootstrap` pushes).
"""

import json
import os
import shlex
import shutil
import subprocess
import sys

ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""
# uv.lock is copied without rendering (Jinja would take most of the bake on a file that
# large); its one templated value is the project's name, filled in here. (Written in two
# halves so that cookiecutter does not render it in this file.)
LOCKED_PROJECT_NAME = '"{' + "{ cookiecutter.project_slug }" + '}"'
LOCK_FILE = "uv.lock"

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


def name_the_locked_project(answers):
    """Put the project's name into uv.lock (the locked versions are the same for every bake)."""
    if not os.path.exists(LOCK_FILE):
        return
    with open(LOCK_FILE, encoding="utf-8") as file:
        text = file.read()
    with open(LOCK_FILE, "w", encoding="utf-8") as file:
        file.write(text.replace(LOCKED_PROJECT_NAME, json.dumps(answers["project_slug"])))


def initialise_git(answers):
    """git init when git is available; a warning, never a failed bake, when it fails."""
    if shutil.which("git") is None:
        warn("git is not installed: the project was generated without a git repository.")
        return
    try:
        init_repository(answers)
    except subprocess.CalledProcessError as error:
        detail = (error.stderr or "").strip().splitlines()
        warn(
            f"git {error.cmd[1]} failed ({detail[-1] if detail else error.returncode}): "
            "the files are generated; run git init yourself."
        )
    except (OSError, ValueError) as error:  # e.g. an argument git cannot receive
        warn(f"git could not run ({error}): the files are generated; run git init yourself.")


def next_steps(answers, project_dir):
    """Where the project is and the first three commands to run in it."""
    lines = [
        f"Generated {project_dir}",
        "Next:",
        f"  cd {shlex.quote(str(project_dir))}",
        "  make install          # .venv with every dependency, and the git hooks",
        "  make local-pipeline   # trains and evaluates the model on the sample data, offline",
        "  make test             # unit, integration and rehearsal tests, offline",
    ]
    if answers.get("source_provider") == "github" and not answers.get("codeconnections_arn"):
        lines.append(
            "Then make bootstrap creates the GitHub connection and tells you where to approve it."
        )
    return "\n".join(lines)


def main(answers=None, project_dir=None):
    """Initialise git, then say where the project is and what to run next."""
    answers = json.loads(ANSWERS_JSON) if answers is None else answers
    name_the_locked_project(answers)
    initialise_git(answers)
    print(next_steps(answers, project_dir or os.getcwd()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
