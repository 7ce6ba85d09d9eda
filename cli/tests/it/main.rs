//! Integration tests of the `hookstream` command against the local broker and Postgres.

mod accounts;
mod avro;
mod command;
mod dlq;
mod lag;
mod pipeline;
mod replay;
mod trace;
