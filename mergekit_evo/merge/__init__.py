"""Building a candidate's model: the Merger kind and its mergekit-on-disk merger, the resident (in-memory) merger and the memory it budgets."""
