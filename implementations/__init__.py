"""The registry's contenders: one module per implementation; the file prefix names the framework."""
