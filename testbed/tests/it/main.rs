//! Integration tests of the testbed's tools against the real broker and Postgres started by
//! `scripts/dev-up.sh`.

mod sink;
