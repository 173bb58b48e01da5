//! Tests only: see `tests/`. The images under test are built by `scripts/build-images.sh`.
