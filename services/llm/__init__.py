"""The LLM service family: vLLM engine arguments, version differences, the cache-aware proxy."""
