"""LightningModules, callbacks, train(cfg) and evaluate(cfg)."""
