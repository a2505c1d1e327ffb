"""The tiny world the project trains for itself, and the ready-made searches the demo and examples run on it."""
