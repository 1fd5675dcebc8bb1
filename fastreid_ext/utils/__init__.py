"""Small helpers shared by the engine, the evaluation and the tools (no heavy imports)."""
