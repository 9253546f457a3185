"""``python -m retention``: the command line."""

from retention.cli import main

raise SystemExit(main())
