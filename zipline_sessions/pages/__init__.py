"""Sign-in pages for people in a browser under /auth/ (sign in, your devices, sign out): serves the sidecar."""
