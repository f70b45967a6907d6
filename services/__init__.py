"""inference-stack: BentoML services for LLM serving, classic ML and cached embeddings."""
