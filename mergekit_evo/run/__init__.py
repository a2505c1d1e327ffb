"""The run itself: the evolution loop, its executors and optimizers, the pre-flight checks and the final choice."""
