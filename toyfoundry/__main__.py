"""`python -m toyfoundry` runs the same command line as the `toyfoundry` script."""

from toyfoundry.cli import main

raise SystemExit(main())
