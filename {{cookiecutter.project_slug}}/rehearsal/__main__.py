"""`python -m rehearsal` (`make rehearse`): rehearse the whole flow offline (see flow.py)."""

from .flow import main

raise SystemExit(main())
