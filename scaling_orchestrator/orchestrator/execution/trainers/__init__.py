"""The Ray side of a trainer of the user's own (backend: command | python; the Ray-free core is
scaling_orchestrator.orchestrator.backends: contract, metrics, command, function).

launch.run_trainer is what execution/worker.py's _train_trial calls for such a trial: inside the
Tune trial process (a command, or a function with num_workers 0) or in each Ray Train worker (a
function with num_workers >= 1: the TorchTrainer's train_loop_per_worker is worker.py's, which
resumes from Train's checkpoint and has rank 0 record the rows).
"""
