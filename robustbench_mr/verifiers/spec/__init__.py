"""The property form (input box + disjunction of ``C y <= d``) and the VNN-LIB parser; writing problems in exchange formats.

Kept import-free, so that naming a stage loads no engine."""
