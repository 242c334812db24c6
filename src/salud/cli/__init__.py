"""`salud <group> <command>`: one module per group."""
