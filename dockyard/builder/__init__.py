"""The Dockerfile builder: parse a Dockerfile, run its steps on the engine, cache them."""
