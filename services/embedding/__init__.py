"""The embedding-cache service family: model loading, cached lookup, schemas, LangChain adapter."""
