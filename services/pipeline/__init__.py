"""The whole pipeline — generate, moderate, train, load, evaluate — each stage through its service."""
