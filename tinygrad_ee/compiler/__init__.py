"""The compiler behind ``tg.compile`` (see docs/design.md, "Compiled steps")."""
