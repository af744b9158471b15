"""Consumer and observer plugins of permalloc (module loader, text patchers, BPF JIT, invariants)."""
