"""Stand-in for SGLang (a test fixture; see ../README.md): only the EPLB interfaces."""
