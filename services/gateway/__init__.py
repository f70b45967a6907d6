"""The entry service of the Bento: composes the LLM, embedding-cache and classic-ML services."""
