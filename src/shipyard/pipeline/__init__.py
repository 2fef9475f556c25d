"""Gates before traffic: command stages and the vulnerability scan (pure parts; the engine runs them)."""
