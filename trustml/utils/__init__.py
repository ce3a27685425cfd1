"""Seeding, validation, hashing and atomic file helpers (layer 0)."""

from trustml.utils.atomic import atomic_write_bytes, atomic_write_text
from trustml.utils.hashing import sha256_file, sha256_update_array
from trustml.utils.seeding import as_seed_sequence, member_seed_sequences, torch_generator
from trustml.utils.validation import check_in, check_positive_int, check_probability

__all__ = [
    "as_seed_sequence",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_in",
    "check_positive_int",
    "check_probability",
    "member_seed_sequences",
    "sha256_file",
    "sha256_update_array",
    "torch_generator",
]
