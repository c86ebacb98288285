"""An example project that brings its own model, data and training loop to hpo (see ../README.md)."""
