"""The inference service: generation with per-request LoRA adapters behind one backend Protocol."""
