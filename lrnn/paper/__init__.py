"""``make paper``: the grid of runs that tests each claim, a cached runner, verdicts, figures and the report.

grid.py      which runs (experiment YAML + LightningCLI dotted keys + seed) each claim needs, per profile
runner.py    runs them as ``lrnn fit`` subprocesses (cached by config hash, in parallel), then ``lrnn evaluate``
measure.py   parameter counts, memory and tokens/s vs T (no training)
collect.py   run folders -> tidy tables (``results/*.csv``)
verdicts.py  explicit rules: numbers -> supported / refuted / mixed
figures.py   matplotlib figures;  render.py  ``README.md``;  report.py  the W&B Report;  sweep.py  W&B sweep YAML
"""
