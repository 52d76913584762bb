"""The sidecar's routes beside the contract's: forward-auth verify for a proxy, the admin routes, token reset and password change; for the sidecar."""
