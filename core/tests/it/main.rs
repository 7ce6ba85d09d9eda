//! Integration tests of core against the real broker and Postgres started by
//! `scripts/dev-up.sh`. Each test uses its own topics and database.

mod broker;
mod database;
mod delivery_log;
mod startup;
