//! Integration tests of the `hookstream` command against the local broker and Postgres.

mod dlq;
