"""Before/after evaluation: score answers of the base model and the adapter, and report them."""
