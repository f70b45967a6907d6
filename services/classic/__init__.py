"""The classic-ML service: a text topic classifier and a tabular classifier behind adaptive batching."""
