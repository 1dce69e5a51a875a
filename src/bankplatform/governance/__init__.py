"""Model governance: gates on the registered model, evidence notebooks, model cards,
and the maker-checker lifecycle from candidate to champion (SR 26-2, EU AI Act
Art 9-15 and Annex IV).

Modules by role: ``settings`` (``conf/<env>/governance.yml``), the measurements
(``performance``, ``fairness``, ``stability``, ``behaviour``, ``explain``),
``gates`` (the gate report), ``registry`` (MLflow model versions and aliases),
``evidence`` (papermill notebooks, self-contained HTML, hashes), ``lifecycle``
(approve, reject, promote, rollback, decommission), ``history`` (who held which
alias when, from the audit log), ``inventory`` and ``documents`` (model card and
the Annex IV pack).
"""
