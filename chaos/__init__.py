"""The chaos soak: a fleet of managed Services releasing continuously on the
sandbox while a seeded fault injector disturbs everything around them, and an
independent checker (chaos.checker) that counts what went wrong."""
