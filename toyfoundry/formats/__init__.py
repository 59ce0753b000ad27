"""File formats: pydantic models for every file the foundry reads or writes; schemas come from them."""
