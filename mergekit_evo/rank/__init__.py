"""Pure functions of the records: which candidate leads (one rule for every view), the Pareto front, the significance tests and the verdict line."""
