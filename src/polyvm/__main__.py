from polyvm.cli import main

raise SystemExit(main())
