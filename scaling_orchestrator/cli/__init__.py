"""The `scaling` command: study commands (plan, run, status, next, demo) and analysis commands
(fit, report, predict, select)."""
