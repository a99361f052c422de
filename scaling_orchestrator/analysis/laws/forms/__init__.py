"""Parametric law forms L(N, D[, U]), one module per form (and beside Chinchilla's, its
cache-blocked objective).

Each form module defines one subclass of `scaling_orchestrator.analysis.laws.forms.base.Form`;
defining it registers it, and `scaling_orchestrator.analysis.laws.registry` imports every module
of this package, so a new form is one new class in one new file here (or in a user's own
module) and nothing else changes. `engine` (the robust objective and the batched multi-start
fit) and `optimum` (compute-optimal allocation by search) serve every form.
"""
