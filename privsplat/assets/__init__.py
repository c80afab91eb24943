"""Small meshes shipped with privsplat (see README.md and the licence notices here)."""
