"""The control socket: JSON-RPC server, dispatch, peer credentials, clients."""
