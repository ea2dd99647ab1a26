"""FastAPI application: thin routes over the scoring pipeline."""
