"""A stand-in for a lab's trainer, for the backend tests: it honours the contract (trial JSON,
checkpoint directory, metrics JSONL) without training, its loss a formula of the tokens.

    python fake_trainer.py MODE OUT_DIR [SECONDS_PER_EVAL]

MODE: ok | kill (SIGKILLs itself after its 2nd evaluation, once) | short (exits 0 after its
first) | crash (exits 3 after its first) | badline (its 2nd evaluation line is not JSON) | missing (its
1st evaluation lacks val_loss and train_loss) | params (reports params 10% off the plan's). Before
each evaluation it logs a curve line (train_loss, no val_loss) one step earlier. Each start appends
{"resumed_at", "start_from", "pid", "trial_id"} to OUT_DIR/starts.jsonl. Its loss grows with lr.
"""

import json
import os
import signal
import sys
import time

mode, out = sys.argv[1], sys.argv[2]
pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
trial = json.load(open(os.environ["SCALING_TRIAL"]))
ckpt, metrics = os.environ["SCALING_CHECKPOINT_DIR"], os.environ["SCALING_METRICS"]
state = os.path.join(ckpt, "state.json")
start_from = os.path.join(os.environ.get("SCALING_START_FROM", ""), "state.json")
source = state if os.path.exists(state) else start_from if os.path.exists(start_from) else ""
resumed_at = json.load(open(source))["tokens"] if source else 0  # a branch: its trunk's save
with open(os.path.join(out, "starts.jsonl"), "a") as f:
    f.write(json.dumps({"resumed_at": resumed_at, "start_from": os.environ.get("SCALING_START_FROM", ""),
                        "pid": os.getpid(), "trial_id": trial["trial_id"]}) + "\n")


def emit(record) -> None:
    with open(metrics, "a") as f:
        f.write((record if isinstance(record, str) else json.dumps(record)) + "\n")


for i, tokens in enumerate(trial["eval_at_tokens"]):
    if tokens < resumed_at:
        continue
    if tokens > resumed_at:  # tokens == resumed_at: the resumed trainer repeats its last line
        time.sleep(pause)
        tmp = state + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"tokens": tokens}, f)
        os.replace(tmp, state)  # save, then report
    step = tokens // trial["batch_tokens"]
    if tokens > resumed_at and mode != "missing":
        emit({"tokens": tokens - trial["batch_tokens"], "step": step - 1, "train_loss": 6.2 * tokens ** -0.1,
              "lr": 1e-3, "tokens_per_second": 100.0})
    worse = 1 + trial["recipe"]["lr"]  # a higher lr, a higher loss (the ASHA test ranks by it)
    record = {"tokens": tokens, "val_loss": 6.0 * tokens ** -0.1 * worse, "train_loss": 6.1 * tokens ** -0.1,
              "step": tokens // trial["batch_tokens"], "lr": 1e-3, "grad_norm": 0.5, "note": "text"}
    if mode == "missing":
        del record["val_loss"], record["train_loss"]
    if mode == "params":
        record["params"] = int(trial["params"] * 1.1)
    emit("{not json" if mode == "badline" and i == 1 else record)
    marker = os.path.join(out, "killed")
    if mode == "kill" and i == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    if mode in ("short", "crash"):
        sys.exit(0 if mode == "short" else 3)

