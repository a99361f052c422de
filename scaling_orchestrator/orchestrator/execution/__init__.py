"""The Ray edge, the only subpackage that imports Ray: the Tune trainable and Train worker
loop, the Tuner, the searcher over a design queue, ASHA stops, hyperparameter search."""
