"""`python -m {{ cookiecutter.package_name }} <command>`: see cli.py."""

from .cli import main

raise SystemExit(main())
