"""Stand-in for vLLM (a test fixture; see ../README.md): only the EPLB policy interface."""
