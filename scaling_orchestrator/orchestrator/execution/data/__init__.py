"""Preparing corpora on Ray Data (the pure steps are models/data/prepare.py and units.py).

prepare.py   prepare_on_ray: the units of a corpus tokenized by a pool of Ray Data actors
"""
