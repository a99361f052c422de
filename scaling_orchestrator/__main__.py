from scaling_orchestrator.cli.study import main

raise SystemExit(main())
