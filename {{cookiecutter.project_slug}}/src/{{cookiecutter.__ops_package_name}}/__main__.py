"""`python -m {{ cookiecutter.__ops_package_name }} <command>`: see cli.py."""

from .cli import main

raise SystemExit(main())
