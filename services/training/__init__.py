"""The training service: durable fine-tuning jobs (local PEFT LoRA, or OpenAI's fine-tuning API)."""
