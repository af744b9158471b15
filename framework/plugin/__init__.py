"""The plugin system: hook specifications, the plugin manager, the perm_alloc contract and policies."""
