"""``python -m tasker``: the same as the ``tasker`` command."""

from tasker.cli import main

raise SystemExit(main())
