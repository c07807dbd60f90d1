"""JSON-RPC method handlers, one module per noun."""
