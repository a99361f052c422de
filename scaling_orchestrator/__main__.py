from scaling_orchestrator.cli.study import run

run()
