"""`python -m controller`: the same as the `controller` command."""

from controller.cli import main

raise SystemExit(main())
