"""Parametric scaling laws L(N, D[, U]): the form registry, one fitting engine (Huber on log L,
multi-start batched L-BFGS), the bootstrap over runs, and which form a table supports."""
