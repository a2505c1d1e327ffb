"""What is searched: the parameter genome (per-layer weights, densities, the method gene), the data-flow genome, the plain merges every run is compared with, and the factory that picks the genome."""
