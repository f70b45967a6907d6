"""Scripts that build, describe and import the LLM weights the services and benchmarks load."""
