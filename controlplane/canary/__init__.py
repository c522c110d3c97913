"""Progressive canaries: a pure state machine per ``Canary`` document, and the route rewrite it drives."""
