"""What each `scaling` command does, in one line (its --help), for the parser that lists them all
and the modules that build their own."""

COMMANDS = {
    "plan": "print the trials of a sweep spec and their cost; nothing runs",
    "prepare": "tokenize a spec's corpus once into .npy shards and a manifest.json (Ray Data)",
    "run": "run the trials of a sweep spec not yet done: its "
    "hparams search, then its grid (re-running resumes)",
    "status": "what a results directory holds: done, running, failed",
    "fit": "fit scaling laws to a results dir or any Parquet/Arrow/CSV table",
    "report": "write report.md, report.html and plots for a results dir or table",
    "predict": "the loss a fitted law predicts at the points of a CSV/Parquet table",
    "select": "choose runs from a finished pool adaptively (loss read once chosen) and fit them",
    "next": "from finished results, the trials to run next (as a spec) to pin down N* at a target",
    "demo": "the whole loop on the shipped corpus: local Ray, CPU, minutes",
    "export": "write a finished trial's kept model as a Hugging Face folder (llama) or reloadable "
    "weights (gpt2)",
}
